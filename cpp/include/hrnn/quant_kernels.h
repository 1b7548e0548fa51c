// The kernels behind reduced-precision scoring (scoring.h), compiled once per instruction set
// (quant_*.cpp) and picked at run time. Plain views only: the per-ISA files use no library templates.
#pragma once
#include <cstdint>

namespace hrnn {

constexpr int kQuantBlock = 16;   // items per block of the code table
constexpr int kQuantGroup = 4;    // hidden dimensions per 32-bit lane of a block
constexpr int kMaxScanRows = 8;   // states scanned together by one kernel call

// The int8 table: item i of block b has codes[(b*G + g)*64 + (i%16)*4 + j] = q[i][4g+j] + 128, with
// O[i] ~ scale[i] * q[i]; scale and bias are padded to whole blocks (padding: scale 0, bias -inf).
struct QuantView {
  const uint8_t* codes;
  const float* scale;
  const float* bias;
  int G;
};

// One state h quantized for a scan: h ~ t * v, v = 256 * hi + lo, each of hi, lo and v holding G*4
// values (zero beyond H). corr = 128 * sum(v) removes the +128 of the codes. A scan keeps an item
// when ub = scale * (t * (q . v) + C) + bias + D >= thr: ub bounds the exact score from above.
struct QuantRow {
  const int8_t* hi;
  const int8_t* lo;
  const int16_t* v;
  int32_t corr;
  float t, C, D, thr;
};

namespace detail {
// Scans blocks [b0, b1) for rows[0 .. R) (R <= kMaxScanRows): row r's kept items and their ub go
// to out_items/out_ub[r * cap ...] (cap >= 16 * (b1 - b0)); n_out[r] = how many.
#define HRNN_QUANT_DECLARE(S)                                                                              \
  void quant_scan_##S(const QuantView& T, const QuantRow* rows, int R, int64_t b0, int64_t b1,            \
                      int32_t* out_items, float* out_ub, int64_t cap, int64_t* n_out);                     \
  void exact_scores_##S(const float* O, const float* bias, int H, const float* h, const int32_t* items,    \
                        int64_t n, float* out);
HRNN_QUANT_DECLARE(generic)
HRNN_QUANT_DECLARE(avx2)
HRNN_QUANT_DECLARE(avx512)
#undef HRNN_QUANT_DECLARE
}  // namespace detail

}  // namespace hrnn
