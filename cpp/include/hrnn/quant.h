// Reduced-precision scoring: every item's output row as int8 codes with a per-item scale, and the
// state as 16-bit integers. The scan computes, for each item, an upper bound ub and a lower bound lb
// of its exact score (the int8 estimate plus or minus a provable error bound); scoring.cpp keeps the
// items whose ub reaches the k-th best lb and rescores only those exactly, so the answer is the exact
// float32 top k.
#pragma once
#include <cstdint>
#include <vector>

#include "hrnn/params.h"
#include "hrnn/quant_kernels.h"

namespace hrnn {

// Which kernels score: Auto (the best this CPU has), Exact (every item in float32, no int8 pass), or
// one instruction set by name (for tests; std::invalid_argument when this CPU lacks it).
enum class ScoreKernels { Auto, Exact, Generic, Avx2, Avx512 };

struct QuantTable {
  int H = 0, G = 0;
  int64_t N = 0, n_blocks = 0;
  std::vector<uint8_t> codes;
  std::vector<float> scale, bias;
  double rmax = 0;     // max over all entries of |O - scale * q| / scale (0.5 up to rounding)
  double bmax = 0;     // max |bias|
  double smax = 0;     // max scale
  bool finite = true;  // false: some output weight or bias is not finite, and only exact scoring is used
  // bias: every item's additive term (the output bias, plus the transition prior's dense part when
  // the model has one), n_items values; every score, scanned or exact, uses it.
  void build(const Params& P, const float* item_bias, int num_threads);
  QuantView view() const { return {codes.data(), scale.data(), bias.data(), G}; }
  int64_t bytes() const;
};

// One state, quantized for a scan. ok is false when h has a non-finite value or the scores could come
// near the float32 overflow (exact scoring then).
struct QuantQuery {
  std::vector<int16_t> v;
  std::vector<int8_t> hi, lo;
  int32_t corr = 0;
  float t = 0.f, C = 0.f, D = 0.f;
  bool ok = false;
  void prepare(const QuantTable& T, const float* h);
  QuantRow row(float thr) const { return {hi.data(), lo.data(), v.data(), corr, t, C, D, thr}; }
  // The lower bound that goes with an upper bound ub of an item with this scale.
  float lower(float ub, float scale) const { return ub - 2.f * (scale * C + D); }
};

struct ScoreKernelSet {
  void (*scan)(const QuantView&, const QuantRow*, int, int64_t, int64_t, int32_t*, float*, int64_t, int64_t*);
  void (*exact)(const float*, const float*, int, const float*, const int32_t*, int64_t, float*);
  const char* name;
};
const ScoreKernelSet& score_kernels(ScoreKernels which);
// The instruction set Auto uses here: "avx512-vnni", "avx2" or "generic".
const char* score_isa();

}  // namespace hrnn
