#include <cub/block/block_reduce.cuh>

#include "check.cuh"
#include "output_kernels.cuh"

namespace hrnn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ inline int32_t column_item(const WindowView& v, int t, int c) {
  return c < v.B ? v.targets[static_cast<int64_t>(t) * v.B + c] : v.negatives[static_cast<int64_t>(t) * v.S + c - v.B];
}

__device__ inline bool has_target(const WindowView& v, int64_t tb) { return v.items[tb] >= 0 && v.targets[tb] >= 0; }

// rc[pos] + rd[age] + hv[pos] + hv[8 + age], hv = h_out . rV (repeat_term in repeat.h).
__device__ inline float repeat_term(const OutputRefs& p, const float* hv, uint8_t pos, uint8_t age) {
  return p.rc[pos] + p.rd[age] + hv[pos] + hv[8 + age];
}

__global__ void gather_columns_kernel(WindowBuffers w, WindowView v, OutputRefs p, bool logq, int t) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int H = w.H;
  if (idx >= static_cast<int64_t>(w.C) * H) return;
  const int c = static_cast<int>(idx / H), k = static_cast<int>(idx % H);
  const int32_t item = column_item(v, t, c);
  w.OC[idx] = item >= 0 ? p.out_rows[static_cast<int64_t>(item) * H + k] : 0.f;
  if (k == 0) {
    w.CB[c] = item >= 0 ? p.bo[item] : 0.f;
    w.CLQ[c] = item >= 0 && logq ? p.logq[item] : 0.f;
  }
}

__device__ inline float warp_sum(float x) {
  for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// One warp per extra column.
__global__ void extra_scores_kernel(WindowBuffers w, WindowView v, OutputRefs p, int e0, int e1, int t) {
  const int e = e0 + static_cast<int>((static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32);
  const int lane = threadIdx.x % 32;
  if (e >= e1) return;
  const int64_t tb = v.ext_tb[e];
  if (!has_target(v, tb)) return;  // an extra of a lane without a target takes no part
  const int H = w.H, b = static_cast<int>(tb - static_cast<int64_t>(t) * w.B);
  const int32_t item = v.ext_items[e];
  const float* h = w.HOUT + tb * H;
  const float* o = p.out_rows + static_cast<int64_t>(item) * H;
  float s = 0.f;
  for (int k = lane; k < H; k += 32) s += h[k] * o[k];
  s = warp_sum(s);
  if (lane == 0) {
    s += p.bo[item];
    const float* hv = w.HV + static_cast<int64_t>(b) * kRepeatWidth;
    for (int32_t m = v.ext_occ_offsets[e]; m < v.ext_occ_offsets[e + 1]; ++m)
      s += repeat_term(p, hv, v.ext_pos[m], v.ext_age[m]);
    w.EXT_S[e] = s;
  }
}

using FloatReduce = cub::BlockReduce<float, kThreads>;
using DoubleReduce = cub::BlockReduce<double, kThreads>;

struct MaxOp {
  __device__ float operator()(float a, float b) const { return a > b ? a : b; }
};
struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

// A reduction whose result every thread of the block receives.
template <class Reduce, class T, class Op>
__device__ T block_all(typename Reduce::TempStorage& tmp, T* result, T x, Op op) {
  const T r = Reduce(tmp).Reduce(x, op);
  if (threadIdx.x == 0) *result = r;
  __syncthreads();
  const T out = *result;
  __syncthreads();  // tmp and result may be reused right after
  return out;
}

// One block per lane: the loss of (t, b) over its included columns and extra columns, as the CPU's
// softmax_row and bpr_max_row, and the gradients of the weighted, scaled loss.
__global__ void __launch_bounds__(kThreads) loss_rows_kernel(WindowBuffers w, WindowView v, OutputRefs p, LossRefs L,
                                                             int t) {
  __shared__ union {
    typename FloatReduce::TempStorage f;
    typename DoubleReduce::TempStorage d;
  } tmp;
  __shared__ float f_result, own_repeat;
  __shared__ double d_result;
  const int b = blockIdx.x, C = w.C;
  const int64_t tb = static_cast<int64_t>(t) * w.B + b;
  float* r = w.R + static_cast<int64_t>(b) * C;
  if (!has_target(v, tb)) {  // the whole block takes this branch
    for (int c = threadIdx.x; c < C; c += kThreads) r[c] = 0.f;
    return;
  }
  const int32_t y = v.targets[tb];
  const float* hv = w.HV + static_cast<int64_t>(b) * kRepeatWidth;
  if (threadIdx.x == 0) {
    float rep = 0.f;
    for (int32_t m = v.rep_offsets[tb]; m < v.rep_offsets[tb + 1]; ++m) rep += repeat_term(p, hv, v.rep_pos[m], v.rep_age[m]);
    own_repeat = rep;
  }
  __syncthreads();
  const int e0 = v.ext_offsets[tb], ne = v.ext_offsets[tb + 1] - e0;
  const float* ext_s = w.EXT_S + e0;
  float* ext_g = w.EXT_G + e0;
  const float scale = v.weights[tb] * L.scale_base;
  auto included = [&](int c) {
    const int32_t it = column_item(v, t, c);
    return it >= 0 && (c == b || it != y);
  };
  auto raw = [&](int c) { return r[c] + (c == b ? own_repeat : 0.f); };
  const float neg_inf = -INFINITY;
  float ce;
  if (L.kind == LossKind::Softmax) {
    auto logit = [&](int c) { return raw(c) - w.CLQ[c]; };
    float m = neg_inf;
    for (int c = threadIdx.x; c < C; c += kThreads)
      if (included(c)) m = fmaxf(m, logit(c));
    for (int e = threadIdx.x; e < ne; e += kThreads) m = fmaxf(m, ext_s[e]);
    m = block_all<FloatReduce>(tmp.f, &f_result, m, MaxOp());
    float z = 0.f;
    for (int c = threadIdx.x; c < C; c += kThreads)
      if (included(c)) z += expf(logit(c) - m);
    for (int e = threadIdx.x; e < ne; e += kThreads) z += expf(ext_s[e] - m);
    z = block_all<FloatReduce>(tmp.f, &f_result, z, SumOp());
    ce = logf(z) + m - logit(b);
    const float k = scale / z;
    __syncthreads();  // every thread has read r[b] (in logit(b)) before it is overwritten
    for (int c = threadIdx.x; c < C; c += kThreads) {
      float d = included(c) ? expf(logit(c) - m) * k : 0.f;
      if (c == b) d -= scale;
      r[c] = d;
    }
    for (int e = threadIdx.x; e < ne; e += kThreads) ext_g[e] = expf(ext_s[e] - m) * k;
  } else {  // BPR-max over the included columns other than the own one, the extras included
    float m = neg_inf;
    for (int c = threadIdx.x; c < C; c += kThreads)
      if (c != b && included(c)) m = fmaxf(m, raw(c));
    for (int e = threadIdx.x; e < ne; e += kThreads) m = fmaxf(m, ext_s[e]);
    m = block_all<FloatReduce>(tmp.f, &f_result, m, MaxOp());
    double z = 0.0;
    for (int c = threadIdx.x; c < C; c += kThreads)
      if (c != b && included(c)) z += expf(raw(c) - m);
    for (int e = threadIdx.x; e < ne; e += kThreads) z += expf(ext_s[e] - m);
    z = block_all<DoubleReduce>(tmp.d, &d_result, z, SumOp());
    const float r_own = raw(b);
    // s_j (softmax over the negatives), sigmoid(r_own - r_j): 0 / unused for excluded columns.
    auto share = [&](float rj) { return static_cast<float>(expf(rj - m) / z); };
    auto sig = [&](float rj) { return 1.f / (1.f + expf(-(r_own - rj))); };
    double A = 0.0, R2 = 0.0, Bs = 0.0;
    auto add = [&](float rj) {
      const float s = share(rj);
      if (s == 0.f) return;
      const double g = sig(rj);
      A += s * g;
      R2 += s * double(rj) * rj;
      Bs += s * g * (1.0 - g);
    };
    for (int c = threadIdx.x; c < C; c += kThreads)
      if (c != b && included(c)) add(raw(c));
    for (int e = threadIdx.x; e < ne; e += kThreads) add(ext_s[e]);
    A = block_all<DoubleReduce>(tmp.d, &d_result, A, SumOp());
    R2 = block_all<DoubleReduce>(tmp.d, &d_result, R2, SumOp());
    Bs = block_all<DoubleReduce>(tmp.d, &d_result, Bs, SumOp());
    constexpr double kEps = 1e-24;
    const double inv = 1.0 / (A + kEps);
    ce = static_cast<float>(-log(A + kEps) + L.bpreg * R2);
    auto grad = [&](float rj) {
      const double s = share(rj);
      if (s == 0.0) return 0.f;
      const double g = sig(rj);
      return static_cast<float>(scale * (-inv * (s * (g - A) - s * g * (1.0 - g)) +
                                         L.bpreg * s * (2.0 * rj + double(rj) * rj - R2)));
    };
    __syncthreads();  // r[b] has been read by every thread
    for (int c = threadIdx.x; c < C; c += kThreads) {
      float d = 0.f;
      if (c == b) d = static_cast<float>(scale * (-inv * Bs));
      else if (included(c)) d = grad(raw(c));
      r[c] = d;
    }
    for (int e = threadIdx.x; e < ne; e += kThreads) ext_g[e] = grad(ext_s[e]);
  }
  __syncthreads();  // r[b] and ext_g are final
  if (threadIdx.x == 0) {
    // d loss / d (h . rV[:, j]) of the repeat terms, which is also d loss / d rc[j] (j < 8) and
    // d loss / d rd[j - 8]: the own column's occurrences, then each extra column's.
    float ghv[kRepeatWidth] = {};
    const float own = r[b];
    for (int32_t m = v.rep_offsets[tb]; m < v.rep_offsets[tb + 1]; ++m) {
      ghv[v.rep_pos[m]] += own;
      ghv[8 + v.rep_age[m]] += own;
    }
    for (int e = 0; e < ne; ++e)
      for (int32_t m = v.ext_occ_offsets[e0 + e]; m < v.ext_occ_offsets[e0 + e + 1]; ++m) {
        ghv[v.ext_pos[m]] += ext_g[e];
        ghv[8 + v.ext_age[m]] += ext_g[e];
      }
    for (int j = 0; j < kRepeatWidth; ++j) w.GHV[tb * kRepeatWidth + j] = ghv[j];
    w.LOSS[tb] = v.weights[tb] * ce;
  }
}

// One thread per (lane, unit).
__global__ void state_grads_kernel(WindowBuffers w, WindowView v, OutputRefs p, bool dropout, int t) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int H = w.H;
  if (idx >= static_cast<int64_t>(w.B) * H) return;
  const int b = static_cast<int>(idx / H), k = static_cast<int>(idx % H);
  const int64_t tb = static_cast<int64_t>(t) * w.B + b;
  float* d = w.DHLOSS + tb * H + k;
  if (!has_target(v, tb)) {
    *d = 0.f;
    return;
  }
  float acc = *d;
  for (int32_t e = v.ext_offsets[tb]; e < v.ext_offsets[tb + 1]; ++e)
    acc += w.EXT_G[e] * p.out_rows[static_cast<int64_t>(v.ext_items[e]) * H + k];
  float rep = 0.f;
  for (int j = 0; j < kRepeatWidth; ++j) rep += w.GHV[tb * kRepeatWidth + j] * p.rV[k * kRepeatWidth + j];
  acc += rep;
  *d = dropout ? acc * w.MASK[static_cast<int64_t>(b) * H + k] : acc;
}

// One thread per column: the sum of the column's gradients over the lanes.
__global__ void bias_grads_kernel(WindowBuffers w, WindowView v, float* gb, int t) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= w.C) return;
  const int32_t slot = v.col_slot[static_cast<int64_t>(t) * w.C + c];
  if (slot < 0) return;
  float s = 0.f;
  for (int b = 0; b < w.B; ++b) s += w.R[static_cast<int64_t>(b) * w.C + c];
  atomicAdd(gb + slot, s);
}

// One warp per extra column: its row's gradient EXT_G * h_out, and its bias's.
__global__ void extra_grads_kernel(WindowBuffers w, WindowView v, float* g_out, float* gb, int e0, int e1) {
  const int e = e0 + static_cast<int>((static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32);
  const int lane = threadIdx.x % 32;
  if (e >= e1) return;
  const int64_t tb = v.ext_tb[e];
  if (!has_target(v, tb)) return;
  const int H = w.H;
  const float g = w.EXT_G[e];
  const int64_t slot = v.ext_slot[e];
  const float* h = w.HOUT + tb * H;
  for (int k = lane; k < H; k += 32) atomicAdd(g_out + slot * H + k, g * h[k]);
  if (lane == 0) atomicAdd(gb + slot, g);
}

}  // namespace

void out_gather_columns(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const OutputRefs& p, bool logq,
                        int t) {
  gather_columns_kernel<<<blocks_for(static_cast<int64_t>(w.C) * w.H, kThreads), kThreads, 0, s>>>(w, v, p, logq, t);
  check_launch("gather_columns_kernel");
}

void out_extra_scores(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const OutputRefs& p, int e0, int e1,
                      int t) {
  if (e1 <= e0) return;
  extra_scores_kernel<<<blocks_for(e1 - e0, kWarps), kThreads, 0, s>>>(w, v, p, e0, e1, t);
  check_launch("extra_scores_kernel");
}

void out_loss_rows(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const OutputRefs& p,
                   const LossRefs& loss, int t) {
  loss_rows_kernel<<<w.B, kThreads, 0, s>>>(w, v, p, loss, t);
  check_launch("loss_rows_kernel");
}

void out_state_grads(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const OutputRefs& p, bool dropout,
                     int t) {
  state_grads_kernel<<<blocks_for(static_cast<int64_t>(w.B) * w.H, kThreads), kThreads, 0, s>>>(w, v, p, dropout, t);
  check_launch("state_grads_kernel");
}

void out_bias_grads(cudaStream_t s, const WindowBuffers& w, const WindowView& v, float* gb, int t) {
  bias_grads_kernel<<<blocks_for(w.C, kThreads), kThreads, 0, s>>>(w, v, gb, t);
  check_launch("bias_grads_kernel");
}

void out_extra_grads(cudaStream_t s, const WindowBuffers& w, const WindowView& v, float* g_out, float* gb, int e0,
                     int e1) {
  if (e1 <= e0) return;
  extra_grads_kernel<<<blocks_for(e1 - e0, kWarps), kThreads, 0, s>>>(w, v, g_out, gb, e0, e1);
  check_launch("extra_grads_kernel");
}

}  // namespace hrnn::cuda
