#include <mma.h>

#include <climits>
#include <cmath>

#include "candidates.cuh"
#include "check.cuh"
#include "select.cuh"

namespace hrnn::cuda {
namespace {

using namespace nvcuda;

// A block keeps 128 items' bf16 rows in shared memory and runs over every row of the batch, 64 at
// a time; each of its 8 warps computes a 16 x 64 part of the 64 x 128 scores on the tensor cores.
// Rows are KP + 8 apart in shared memory: KP alone (a multiple of 64 for H = 256, 512) would put
// every row of a fragment in the same banks.
constexpr int kItems = 128, kUsers = 64, kCollectThreads = 256, kWarps = kCollectThreads / 32;

__host__ __device__ inline int smem_ld(int KP) { return KP + 8; }

size_t collect_smem(int KP) {
  return static_cast<size_t>(kItems + kUsers) * smem_ld(KP) * sizeof(__nv_bfloat16) + kWarps * 256 * sizeof(float) +
         (2 * kItems + 2 * kUsers) * sizeof(float);
}

__global__ void bf16_rows_kernel(const float* __restrict__ src, int64_t rows, int H, int KP,
                                 __nv_bfloat16* __restrict__ dst, float* __restrict__ norms, float scale) {
  const int64_t r = blockIdx.x;
  double ss = 0.0;
  for (int c = threadIdx.x; c < KP; c += 32) {
    const float v = c < H ? src[r * H + c] : 0.f;
    dst[r * KP + c] = __float2bfloat16_rn(v);
    ss += static_cast<double>(v) * v;
  }
  for (int off = 16; off > 0; off >>= 1) ss += __shfl_down_sync(0xffffffffu, ss, off);
  if (norms && threadIdx.x == 0) norms[r] = static_cast<float>(sqrt(ss) * (1.0 + 1e-6) * scale);
}

__global__ void gather_strided_kernel(const float* __restrict__ src, int64_t n, int stride, float* __restrict__ dst) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < n) dst[j] = src[j * stride];
}

__global__ void thresholds_kernel(const float* __restrict__ sub_top, int64_t rows, int kp, int k,
                                  const int32_t* __restrict__ mask_off, float* __restrict__ tau) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const int at = k + (mask_off[r + 1] - mask_off[r]) - 1;
  const float t = at < kp ? sub_top[r * kp + at] : -INFINITY;
  tau[r] = t > -INFINITY ? t : INFINITY;  // missing (too many masked items or valid scores too few): no threshold
}

__global__ void __launch_bounds__(kCollectThreads)
    collect_kernel(const __nv_bfloat16* __restrict__ O16, const float* __restrict__ bias,
                   const float* __restrict__ onorm, int64_t N, const __nv_bfloat16* __restrict__ H16,
                   const float* __restrict__ hnorm, const float* __restrict__ tau, int M, int KP, int cap,
                   int32_t* __restrict__ counts, int32_t* __restrict__ cand) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int LD = smem_ld(KP);
  __nv_bfloat16* Bs = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* As = Bs + kItems * LD;
  float* scratch = reinterpret_cast<float*>(As + kUsers * LD);
  float* item_bias = scratch + kWarps * 256;
  float* item_norm = item_bias + kItems;
  float* user_tau = item_norm + kItems;
  float* user_norm = user_tau + kUsers;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kItems;
  const int vec = KP / 8;  // 16-byte loads per row
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  for (int e = tid; e < kItems * vec; e += kCollectThreads) {
    const int r = e / vec, c = e % vec;
    reinterpret_cast<uint4*>(Bs + r * LD)[c] = n0 + r < N ? reinterpret_cast<const uint4*>(O16 + (n0 + r) * KP)[c] : zero;
  }
  for (int r = tid; r < kItems; r += kCollectThreads) {
    item_bias[r] = n0 + r < N ? bias[n0 + r] : 0.f;
    item_norm[r] = n0 + r < N ? onorm[n0 + r] : 0.f;
  }
  const int uf = warp & 3, nf0 = (warp >> 2) * 4;
  float* sc = scratch + warp * 256;
  for (int u0 = 0; u0 < M; u0 += kUsers) {
    __syncthreads();  // the previous tile's rows are no longer read
    for (int e = tid; e < kUsers * vec; e += kCollectThreads) {
      const int r = e / vec, c = e % vec;
      reinterpret_cast<uint4*>(As + r * LD)[c] =
          u0 + r < M ? reinterpret_cast<const uint4*>(H16 + static_cast<int64_t>(u0 + r) * KP)[c] : zero;
    }
    for (int r = tid; r < kUsers; r += kCollectThreads) {
      user_tau[r] = u0 + r < M ? tau[u0 + r] : INFINITY;
      user_norm[r] = u0 + r < M ? hnorm[u0 + r] : 0.f;
    }
    __syncthreads();
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4];
#pragma unroll
    for (int f = 0; f < 4; ++f) wmma::fill_fragment(acc[f], 0.f);
    for (int ks = 0; ks < KP; ks += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
      wmma::load_matrix_sync(a, As + uf * 16 * LD + ks, LD);
#pragma unroll
      for (int f = 0; f < 4; ++f) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
        wmma::load_matrix_sync(b, Bs + (nf0 + f) * 16 * LD + ks, LD);
        wmma::mma_sync(acc[f], a, b, acc[f]);
      }
    }
#pragma unroll
    for (int f = 0; f < 4; ++f) {
      wmma::store_matrix_sync(sc, acc[f], 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int ur = uf * 16 + e / 16, ic = (nf0 + f) * 16 + e % 16;
        const float t = user_tau[ur];
        const float v = sc[e] + item_bias[ic];
        // Slack for the bias additions and the norms' own rounding.
        const float bound = v + user_norm[ur] * item_norm[ic] + 1e-6f * (fabsf(v) + fabsf(t)) + 1e-30f;
        if (t < INFINITY && bound >= t && n0 + ic < N && u0 + ur < M) {
          const int pos = atomicAdd(counts + u0 + ur, 1);
          if (pos < cap) cand[static_cast<int64_t>(u0 + ur) * cap + pos] = static_cast<int32_t>(n0 + ic);
        }
      }
      __syncwarp();
    }
  }
}

constexpr int kRescoreThreads = 256;

__global__ void __launch_bounds__(kRescoreThreads)
    rescore_kernel(const float* __restrict__ O, const float* __restrict__ bias, int H, const float* __restrict__ hs,
                   const int32_t* __restrict__ counts, const int32_t* __restrict__ cand, int cap,
                   const float* __restrict__ tau, const int32_t* __restrict__ mask_off,
                   const int32_t* __restrict__ mask_items, int k, int32_t* __restrict__ out_items,
                   float* __restrict__ out_scores, uint8_t* __restrict__ need_full) {
  extern __shared__ __align__(128) unsigned char smem[];
  uint32_t* keys = reinterpret_cast<uint32_t*>(smem);
  int32_t* idx = reinterpret_cast<int32_t*>(keys + cap);
  float* h = reinterpret_cast<float*>(idx + cap);
  const int64_t row = blockIdx.x;
  const int count = counts[row];
  const bool full = !(tau[row] < INFINITY) || count > cap;
  if (threadIdx.x == 0) need_full[row] = full ? 1 : 0;
  if (full) return;
  for (int i = threadIdx.x; i < H; i += blockDim.x) h[i] = hs[row * H + i];
  __syncthreads();
  const int32_t* mask = mask_items + mask_off[row];
  const int n_mask = mask_off[row + 1] - mask_off[row];
  uint32_t P = 1;
  while (P < static_cast<uint32_t>(count)) P <<= 1;
  for (uint32_t c = threadIdx.x; c < P; c += blockDim.x) {
    uint32_t key = 0u;
    int32_t item = INT_MAX;
    if (c < static_cast<uint32_t>(count)) {
      item = cand[row * cap + c];
      const float* o = O + static_cast<int64_t>(item) * H;
      float acc = 0.f;  // the full pass's order: one FMA chain over the hidden dimensions, then the bias
      for (int i = 0; i < H; ++i) acc = fmaf(h[i], o[i], acc);
      key = order_key(acc + bias[item]);
      int lo = 0, hi = n_mask;
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (mask[mid] < item) lo = mid + 1;
        else hi = mid;
      }
      if (lo < n_mask && mask[lo] == item) key = 0u;
    }
    keys[c] = key;
    idx[c] = item;
  }
  __syncthreads();
  block_bitonic_sort(keys, idx, P);
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    const bool have = static_cast<uint32_t>(j) < P && keys[j] != 0u;
    out_items[row * k + j] = have ? idx[j] : -1;
    out_scores[row * k + j] = have ? key_value(keys[j]) : -INFINITY;
  }
}

int max_shared_optin() {
  int dev = 0, n = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&n, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "cudaDeviceGetAttribute");
  return n;
}

}  // namespace

void to_bf16_rows(cudaStream_t s, const float* src, int64_t rows, int H, int KP, __nv_bfloat16* dst, float* norms,
                  float scale) {
  if (rows <= 0) return;
  bf16_rows_kernel<<<static_cast<unsigned>(rows), 32, 0, s>>>(src, rows, H, KP, dst, norms, scale);
  check_launch("bf16_rows_kernel");
}

void gather_strided(cudaStream_t s, const float* src, int64_t n_out, int stride, float* dst) {
  if (n_out <= 0) return;
  gather_strided_kernel<<<blocks_for(n_out, 256), 256, 0, s>>>(src, n_out, stride, dst);
  check_launch("gather_strided_kernel");
}

void row_thresholds(cudaStream_t s, const float* sub_top, int64_t rows, int kp, int k, const int32_t* mask_off,
                    float* tau) {
  if (rows <= 0) return;
  thresholds_kernel<<<blocks_for(rows, 256), 256, 0, s>>>(sub_top, rows, kp, k, mask_off, tau);
  check_launch("thresholds_kernel");
}

bool collect_fits(int KP) {
  return KP % 16 == 0 && KP <= padded_hidden(kMaxCandidateHidden) &&
         collect_smem(KP) <= static_cast<size_t>(max_shared_optin());
}

void collect_candidates(cudaStream_t s, const __nv_bfloat16* O16, const float* bias, const float* onorm, int64_t N,
                        const __nv_bfloat16* H16, const float* hnorm, const float* tau, int M, int KP, int cap,
                        int32_t* counts, int32_t* cand) {
  if (M <= 0 || N <= 0) return;
  const size_t smem = collect_smem(KP);
  check(cudaFuncSetAttribute(collect_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
        "cudaFuncSetAttribute (collect_kernel)");
  collect_kernel<<<blocks_for(N, kItems), kCollectThreads, smem, s>>>(O16, bias, onorm, N, H16, hnorm, tau, M, KP,
                                                                      cap, counts, cand);
  check_launch("collect_kernel");
}

void rescore_topk(cudaStream_t s, const float* O, const float* bias, int H, const float* hs, int M,
                  const int32_t* counts, const int32_t* cand, int cap, const float* tau, const int32_t* mask_off,
                  const int32_t* mask_items, int k, int32_t* out_items, float* out_scores, uint8_t* need_full) {
  if (M <= 0) return;
  const size_t smem = static_cast<size_t>(cap) * 8 + static_cast<size_t>(H) * sizeof(float);
  check(cudaFuncSetAttribute(rescore_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
        "cudaFuncSetAttribute (rescore_kernel)");
  rescore_kernel<<<static_cast<unsigned>(M), kRescoreThreads, smem, s>>>(O, bias, H, hs, counts, cand, cap, tau,
                                                                         mask_off, mask_items, k, out_items,
                                                                         out_scores, need_full);
  check_launch("rescore_kernel");
}

}  // namespace hrnn::cuda
