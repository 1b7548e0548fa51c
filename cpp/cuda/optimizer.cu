#include <cmath>

#include "optimizer.cuh"
#include "window_data.cuh"

namespace hrnn::cuda {
namespace {

constexpr int kThreads = 256;

struct Rule {  // the update of one parameter, as Optimizer::update
  OptKind kind;
  float momentum, beta1, beta2, eps, c1, c2;
  bool two;
  __device__ void apply(float* p, float g, float* a, float* b, float lr) const {
    if (kind == OptKind::Adagrad) {
      *a += g * g;
      const float u = lr * g / sqrtf(*a + eps);
      if (two) {
        *b = momentum * *b + u;
        *p -= *b;
      } else {
        *p -= u;
      }
    } else {
      *a = beta1 * *a + (1.f - beta1) * g;
      *b = beta2 * *b + (1.f - beta2) * g * g;
      *p -= lr * (*a * c1) / (sqrtf(*b * c2) + eps);
    }
  }
};

__global__ void dense_step_kernel(Rule rule, float* p, const float* g, float* a, float* b, int64_t n, float lr,
                                  int64_t slow_begin, int64_t slow_end, float slow_lr) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  rule.apply(p + i, g[i], a + i, b ? b + i : nullptr, i >= slow_begin && i < slow_end ? slow_lr : lr);
}

// One thread per (touched row, unit), unit H standing for the row's bias.
__global__ void rows_step_kernel(Rule rule, int H, bool tied, const int32_t* rows, const uint8_t* flags, int64_t n_rows,
                                 float* E, const float* gE, float* Ea, float* Eb, float* O, const float* gO, float* Oa,
                                 float* Ob, float* bo, const float* gb, float* ba, float* bb, float lr) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * (H + 1)) return;
  const int64_t slot = idx / (H + 1);
  const int k = static_cast<int>(idx % (H + 1));
  const int64_t item = rows[slot];
  const uint8_t f = flags[slot];
  if (k == H) {
    if (f & kRowOut) rule.apply(bo + item, gb[slot], ba + item, bb ? bb + item : nullptr, lr);
    return;
  }
  const int64_t at = item * H + k, g_at = slot * H + k;
  if (tied || (f & kRowIn)) rule.apply(E + at, gE[g_at], Ea + at, Eb ? Eb + at : nullptr, lr);
  if (!tied && (f & kRowOut)) rule.apply(O + at, gO[g_at], Oa + at, Ob ? Ob + at : nullptr, lr);
}

}  // namespace

DeviceOptimizer::DeviceOptimizer(const DeviceModel& m, const OptConfig& cfg, cudaStream_t s) : cfg_(cfg) {
  if (!(std::isfinite(cfg.lr) && cfg.lr > 0.f)) throw std::invalid_argument("learning_rate must be > 0");
  if (!(cfg.momentum >= 0.f && cfg.momentum < 1.f)) throw std::invalid_argument("momentum must be in [0, 1)");
  two_ = cfg.kind == OptKind::Adam || cfg.momentum > 0.f;
  const size_t dense = static_cast<size_t>(m.layout.total), table = static_cast<size_t>(m.N) * m.H;
  dense_a_.zero(dense, s);
  E_a_.zero(table, s);
  bo_a_.zero(static_cast<size_t>(m.N), s);
  if (!m.tied) O_a_.zero(table, s);
  if (two_) {
    dense_b_.zero(dense, s);
    E_b_.zero(table, s);
    bo_b_.zero(static_cast<size_t>(m.N), s);
    if (!m.tied) O_b_.zero(table, s);
  }
}

void DeviceOptimizer::step(DeviceModel& m, const float* g_dense, const int32_t* rows, const uint8_t* row_flags,
                           int64_t n_rows, const float* g_E, const float* g_O, const float* g_bo, cudaStream_t s) {
  ++t_;
  float bc1 = 1.f, bc2 = 1.f;
  if (cfg_.kind == OptKind::Adam) {
    bc1 = 1.f - std::pow(cfg_.beta1, static_cast<float>(t_));
    bc2 = 1.f - std::pow(cfg_.beta2, static_cast<float>(t_));
  }
  const Rule rule{cfg_.kind, cfg_.momentum, cfg_.beta1, cfg_.beta2, cfg_.eps, 1.f / bc1, 1.f / bc2, two_};
  const int64_t n = m.layout.total;
  dense_step_kernel<<<blocks_for(n, kThreads), kThreads, 0, s>>>(
      rule, m.dense.get(), g_dense, dense_a_.get(), two_ ? dense_b_.get() : nullptr, n, cfg_.lr, m.layout.rV,
      m.layout.rV + m.layout.rV_size, cfg_.lr * cfg_.repeat_lr_scale);
  check_launch("dense_step_kernel");
  if (n_rows == 0) return;
  rows_step_kernel<<<blocks_for(n_rows * (m.H + 1), kThreads), kThreads, 0, s>>>(
      rule, m.H, m.tied, rows, row_flags, n_rows, m.E.get(), g_E, E_a_.get(), two_ ? E_b_.get() : nullptr,
      m.O.get(), g_O, O_a_.get(), two_ ? O_b_.get() : nullptr, m.bo.get(), g_bo, bo_a_.get(),
      two_ ? bo_b_.get() : nullptr, cfg_.lr);
  check_launch("rows_step_kernel");
}

}  // namespace hrnn::cuda
