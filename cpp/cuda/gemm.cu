#include <algorithm>
#include <atomic>
#include <string>

#include "check.cuh"
#include "gemm.cuh"

namespace hrnn::cuda {
namespace {

// A BM x BN tile of C per block of 256 threads (64 x 64: 4 x 4 outputs per thread; 32 x 32, for
// products too small to fill the device with the larger tile: 2 x 2), K in steps of 16 through
// shared memory. Tiles are loaded so that consecutive threads read consecutive addresses whichever
// operand is transposed. Without split K (atomic epilogues), every output is one FMA chain over k
// in order, whatever the tile.
constexpr int kBK = 16, kThreads = 256;

template <Op TA, Op TB, int kBM, int kBN>
__global__ void __launch_bounds__(kThreads) gemm_kernel(int M, int N, int K, int kchunk, const float* __restrict__ A,
                                                        int64_t lda, const float* __restrict__ B, int64_t ldb,
                                                        float* __restrict__ C, int64_t ldc, Epilogue ep) {
  constexpr int RM = kBM / 16, RN = kBN / 16;
  __shared__ float As[kBK][kBM + 4];
  __shared__ float Bs[kBK][kBN + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
  const int kbeg = blockIdx.z * kchunk, kend = min(K, kbeg + kchunk);
  float acc[RM][RN] = {};
  // The next tile's operands are fetched into registers while the current one is multiplied, so
  // that a long K loop does not wait on global memory at every step.
  constexpr int kLoadsA = kBM * kBK / kThreads, kLoadsB = kBN * kBK / kThreads;
  float ra[kLoadsA], rb[kLoadsB];
  auto fetch = [&](int k0) {
#pragma unroll
    for (int i = 0; i < kLoadsA; ++i) {
      const int idx = tid + i * kThreads;
      const int m = TA == Op::N ? idx / kBK : idx % kBM;
      const int k = TA == Op::N ? idx % kBK : idx / kBM;
      const int gm = m0 + m, gk = k0 + k;
      ra[i] = gm < M && gk < kend ? (TA == Op::N ? A[gm * lda + gk] : A[gk * lda + gm]) : 0.f;
    }
#pragma unroll
    for (int i = 0; i < kLoadsB; ++i) {
      const int idx = tid + i * kThreads;
      const int n = TB == Op::N ? idx % kBN : idx / kBK;
      const int k = TB == Op::N ? idx / kBN : idx % kBK;
      const int gn = n0 + n, gk = k0 + k;
      rb[i] = gn < N && gk < kend ? (TB == Op::N ? B[gk * ldb + gn] : B[gn * ldb + gk]) : 0.f;
    }
  };
  if (kbeg < kend) fetch(kbeg);
  for (int k0 = kbeg; k0 < kend; k0 += kBK) {
#pragma unroll
    for (int i = 0; i < kLoadsA; ++i) {
      const int idx = tid + i * kThreads;
      As[TA == Op::N ? idx % kBK : idx / kBM][TA == Op::N ? idx / kBK : idx % kBM] = ra[i];
    }
#pragma unroll
    for (int i = 0; i < kLoadsB; ++i) {
      const int idx = tid + i * kThreads;
      Bs[TB == Op::N ? idx / kBN : idx % kBK][TB == Op::N ? idx % kBN : idx / kBK] = rb[i];
    }
    __syncthreads();
    if (k0 + kBK < kend) fetch(k0 + kBK);
#pragma unroll
    for (int k = 0; k < kBK; ++k) {
      float a[RM], b[RN];
#pragma unroll
      for (int i = 0; i < RM; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < RN; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < RM; ++i) {
    const int gm = m0 + ty + 16 * i;
    if (gm >= M) continue;
    int64_t row = gm;
    if (ep.row_map) {
      row = ep.row_map[gm];
      if (row < 0) continue;
    }
#pragma unroll
    for (int j = 0; j < RN; ++j) {
      const int gn = n0 + tx + 16 * j;
      if (gn >= N) continue;
      float v = acc[i][j];
      if (ep.col_bias && blockIdx.z == 0) v += ep.col_bias[gn];
      float* c = C + row * ldc + gn;
      if (ep.atomic) atomicAdd(c, v);
      else if (ep.accumulate) *c += v;
      else *c = v;
    }
  }
}

int multiprocessors() {
  static std::atomic<int> cache[64];
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  if (dev < 0 || dev >= 64) dev = 0;
  int n = cache[dev].load();
  if (n == 0) {
    check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
    cache[dev].store(n);
  }
  return std::max(n, 1);
}

template <Op TA, Op TB, int BM>
void launch(dim3 grid, cudaStream_t s, int M, int N, int K, int kchunk, const float* A, int64_t lda, const float* B,
            int64_t ldb, float* C, int64_t ldc, const Epilogue& ep) {
  gemm_kernel<TA, TB, BM, BM><<<grid, kThreads, 0, s>>>(M, N, K, kchunk, A, lda, B, ldb, C, ldc, ep);
}

template <int BM>
void launch(Op ta, Op tb, dim3 grid, cudaStream_t s, int M, int N, int K, int kchunk, const float* A, int64_t lda,
            const float* B, int64_t ldb, float* C, int64_t ldc, const Epilogue& ep) {
  if (ta == Op::N && tb == Op::N) launch<Op::N, Op::N, BM>(grid, s, M, N, K, kchunk, A, lda, B, ldb, C, ldc, ep);
  else if (ta == Op::N) launch<Op::N, Op::T, BM>(grid, s, M, N, K, kchunk, A, lda, B, ldb, C, ldc, ep);
  else if (tb == Op::N) launch<Op::T, Op::N, BM>(grid, s, M, N, K, kchunk, A, lda, B, ldb, C, ldc, ep);
  else launch<Op::T, Op::T, BM>(grid, s, M, N, K, kchunk, A, lda, B, ldb, C, ldc, ep);
}

__global__ void column_sums_kernel(int64_t R, int W, const float* __restrict__ A, int64_t lda, float* __restrict__ out,
                                   int64_t rows_per_block) {
  __shared__ float part[8][33];
  const int lane = threadIdx.x % 32, group = threadIdx.x / 32;
  const int c = blockIdx.x * 32 + lane;
  const int64_t r0 = blockIdx.y * rows_per_block;
  const int64_t r1 = min(R, r0 + rows_per_block);
  float s = 0.f;
  if (c < W)
    for (int64_t r = r0 + group; r < r1; r += 8) s += A[r * lda + c];
  part[group][lane] = s;
  __syncthreads();
  if (group == 0 && c < W) {
    float t = 0.f;
    for (int g = 0; g < 8; ++g) t += part[g][lane];
    atomicAdd(out + c, t);
  }
}

}  // namespace

void gemm(cudaStream_t s, Op ta, Op tb, int M, int N, int K, const float* A, int64_t lda, const float* B, int64_t ldb,
          float* C, int64_t ldc, const Epilogue& ep) {
  if (M <= 0 || N <= 0) return;
  if (ep.row_map && !ep.atomic) throw std::logic_error("gemm: a row map needs atomic accumulation");
  // The larger tile where it gives every multiprocessor a block, else the smaller one.
  const int64_t sms = multiprocessors();
  const int tile = ((M + 63) / 64) * ((N + 63) / 64) >= sms ? 64 : 32;
  const int64_t grid_m = (M + tile - 1) / tile, grid_n = (N + tile - 1) / tile;
  if (grid_m > 65535 || grid_n > 0x7fffffff)
    throw std::invalid_argument("gemm: matrix too large for one launch (" + std::to_string(M) + " x " +
                                std::to_string(N) + ")");
  // Atomic accumulation lets K be split across blocks when there are too few tiles to fill the device.
  int splits = 1;
  if (ep.atomic && K > 0) {
    const int64_t tiles = grid_m * grid_n, want = 2 * sms;
    if (tiles < want) splits = static_cast<int>(std::min<int64_t>((want + tiles - 1) / tiles, (K + 4 * kBK - 1) / (4 * kBK)));
  }
  int kchunk = splits > 1 ? ((K + splits - 1) / splits + kBK - 1) / kBK * kBK : K;
  if (splits > 1) splits = (K + kchunk - 1) / kchunk;
  const dim3 grid(static_cast<unsigned>(grid_n), static_cast<unsigned>(grid_m), static_cast<unsigned>(splits));
  if (tile == 64) launch<64>(ta, tb, grid, s, M, N, K, kchunk, A, lda, B, ldb, C, ldc, ep);
  else launch<32>(ta, tb, grid, s, M, N, K, kchunk, A, lda, B, ldb, C, ldc, ep);
  check_launch("gemm_kernel");
}

void column_sums(cudaStream_t s, int64_t R, int W, const float* A, int64_t lda, float* out) {
  if (R <= 0 || W <= 0) return;
  const int64_t rows_per_block = std::max<int64_t>(512, (R + 65534) / 65535);
  const dim3 grid(blocks_for(W, 32), static_cast<unsigned>((R + rows_per_block - 1) / rows_per_block));
  column_sums_kernel<<<grid, 256, 0, s>>>(R, W, A, lda, out, rows_per_block);
  check_launch("column_sums_kernel");
}

}  // namespace hrnn::cuda
