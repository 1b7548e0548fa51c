#include "hrnn/quant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>

#include "hrnn/errors.h"
#include "hrnn/parallel.h"

namespace hrnn {

void QuantTable::build(const Params& P, const float* item_bias, int num_threads) {
  H = P.H, G = (P.H + kQuantGroup - 1) / kQuantGroup, N = P.n_items;
  n_blocks = (N + kQuantBlock - 1) / kQuantBlock;
  const int64_t padded = n_blocks * kQuantBlock;
  codes.assign(static_cast<size_t>(n_blocks) * G * 64, 128);  // 128: q = 0
  scale.assign(padded, 0.f);
  bias.assign(padded, -std::numeric_limits<float>::infinity());
  const float* O = P.out_rows();
  // Chunks of items in parallel, each with its own maxima, combined afterwards.
  constexpr int64_t kChunk = 4096;
  const int64_t n_chunks = (N + kChunk - 1) / kChunk;
  std::vector<double> rm(n_chunks, 0.0), bm(n_chunks, 0.0), sm(n_chunks, 0.0);
  std::vector<uint8_t> fin(n_chunks, 1);
  parallel_for(n_chunks, num_threads, [&](int64_t c) {
    for (int64_t i = c * kChunk; i < std::min(N, (c + 1) * kChunk); ++i) {
      const float* row = O + i * H;
      float m = 0.f;
      bool row_finite = std::isfinite(item_bias[i]);
      for (int k = 0; k < H; ++k) {
        row_finite = row_finite && std::isfinite(row[k]);
        m = std::max(m, std::fabs(row[k]));
      }
      fin[c] = fin[c] && row_finite;
      bias[i] = item_bias[i];
      bm[c] = std::max(bm[c], static_cast<double>(std::fabs(item_bias[i])));
      const float s = m / 127.f;
      scale[i] = s;
      if (!row_finite || !(s > 0.f)) continue;  // not used / a zero row: q = 0 and no error
      sm[c] = std::max(sm[c], static_cast<double>(s));
      uint8_t* blk = codes.data() + (i / kQuantBlock) * G * 64 + (i % kQuantBlock) * kQuantGroup;
      const float inv = 127.f / m;  // q may miss the nearest integer by a rounding: rmax records it
      double err = 0;
      for (int k = 0; k < H; ++k) {
        const float q = std::clamp(std::nearbyint(row[k] * inv), -127.f, 127.f);
        blk[(k / kQuantGroup) * 64 + k % kQuantGroup] = static_cast<uint8_t>(static_cast<int>(q) + 128);
        err = std::max(err, std::fabs(static_cast<double>(row[k]) - static_cast<double>(s) * q));
      }
      rm[c] = std::max(rm[c], err / s);
    }
  });
  rmax = *std::max_element(rm.begin(), rm.end());
  bmax = *std::max_element(bm.begin(), bm.end());
  smax = *std::max_element(sm.begin(), sm.end());
  finite = std::all_of(fin.begin(), fin.end(), [](uint8_t f) { return f != 0; });
}

int64_t QuantTable::bytes() const {
  return static_cast<int64_t>(codes.size() + sizeof(float) * (scale.size() + bias.size()));
}

void QuantQuery::prepare(const QuantTable& T, const float* h) {
  const int H = T.H, n = T.G * kQuantGroup;
  float m = 0.f;
  ok = true;
  for (int k = 0; k < H; ++k) {
    ok = ok && std::isfinite(h[k]);
    m = std::max(m, std::fabs(h[k]));
  }
  if (!ok) return;
  // v = 256 * hi + lo with hi, lo in int8 needs |v| <= 32639; q . v must also fit in int32.
  const int32_t vmax = static_cast<int32_t>(
      std::min<int64_t>(32639, std::numeric_limits<int32_t>::max() / (127 * static_cast<int64_t>(n))));
  t = m > 0.f ? m / static_cast<float>(vmax) : 1.f;
  v.assign(n, 0), hi.assign(n, 0), lo.assign(n, 0);
  double nh = 0, nd = 0;
  int64_t sum = 0;
  for (int k = 0; k < H; ++k) {
    const int32_t x = std::clamp(static_cast<int32_t>(std::lround(h[k] / t)), -vmax, vmax);
    v[k] = static_cast<int16_t>(x);
    lo[k] = static_cast<int8_t>(static_cast<uint8_t>(x & 0xff));
    hi[k] = static_cast<int8_t>((x - lo[k]) / 256);
    sum += x;
    const double d = static_cast<double>(h[k]) - static_cast<double>(t) * x;
    nh += static_cast<double>(h[k]) * h[k];
    nd += d * d;
  }
  corr = static_cast<int32_t>(static_cast<uint32_t>(128 * sum));  // modulo 2^32, like the kernels
  nh = std::sqrt(nh), nd = std::sqrt(nd);
  // Exact score = O.h + b with O = scale (q + e), |e| <= rmax, and h = t v + d, so
  //   O.h + b - (scale t q.v + b) = scale (e.h + q.d),  |e.h| <= sqrt(H) rmax |h|,  |q.d| <= 127 sqrt(H) |d|.
  // eps covers the float32 rounding of the exact score (an H-term fused chain and the bias) and of
  // the estimate (a few operations), relative to the magnitudes 128 sqrt(H) scale (|h| + |d|) and
  // |b|, and the last term their absolute error where results are subnormal (2^-149 per
  // operation); the 1.01 keeps the bound generous.
  const double sq = std::sqrt(static_cast<double>(H)), eps = (H + 8) * std::ldexp(1.0, -22);
  C = static_cast<float>(1.01 * (sq * (T.rmax * nh + 127.0 * nd) + eps * 128.0 * sq * (nh + nd)));
  D = static_cast<float>(1.01 * eps * T.bmax + (H + 16) * std::ldexp(1.0, -149));
  // Every estimate, bound and score stays below this, far from the float32 overflow.
  ok = 128.0 * sq * T.smax * (nh + nd) * 4.0 + 4.0 * T.bmax < 1e37;
}

namespace {

bool cpu_has(const char* what) {
#if defined(__x86_64__) && defined(HRNN_X86_KERNELS)
  __builtin_cpu_init();
  if (std::string_view(what) == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("fma");
  if (std::string_view(what) == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return std::string_view(what) == "generic";
}

const ScoreKernelSet kGeneric{detail::quant_scan_generic, detail::exact_scores_generic, "generic"};
#if defined(__x86_64__) && defined(HRNN_X86_KERNELS)
const ScoreKernelSet kAvx2{detail::quant_scan_avx2, detail::exact_scores_avx2, "avx2"};
const ScoreKernelSet kAvx512{detail::quant_scan_avx512, detail::exact_scores_avx512, "avx512-vnni"};
#endif

const ScoreKernelSet& best() {
#if defined(__x86_64__) && defined(HRNN_X86_KERNELS)
  static const ScoreKernelSet& b = cpu_has("avx512") ? kAvx512 : cpu_has("avx2") ? kAvx2 : kGeneric;
  return b;
#else
  return kGeneric;
#endif
}

}  // namespace

const ScoreKernelSet& score_kernels(ScoreKernels which) {
  switch (which) {
    case ScoreKernels::Generic: return kGeneric;
#if defined(__x86_64__) && defined(HRNN_X86_KERNELS)
    case ScoreKernels::Avx2:
      require(cpu_has("avx2"), "this CPU has no AVX2+FMA: the 'avx2' scoring kernels cannot run here");
      return kAvx2;
    case ScoreKernels::Avx512:
      require(cpu_has("avx512"), "this CPU has no AVX-512 VNNI: the 'avx512' scoring kernels cannot run here");
      return kAvx512;
#else
    case ScoreKernels::Avx2:
    case ScoreKernels::Avx512: invalid("the AVX scoring kernels are not built on this platform");
#endif
    default: return best();
  }
}

const char* score_isa() { return best().name; }

}  // namespace hrnn
