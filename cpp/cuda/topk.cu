#include <algorithm>
#include <climits>
#include <cub/block/block_scan.cuh>
#include <stdexcept>

#include "gemm.cuh"
#include "topk.cuh"

namespace hrnn::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kBins = 2048;

// Larger float -> larger key; 0 for NaN and -inf, which are never returned (TopK skips them), and
// -0 keyed as +0 (they tie, as floats).
__device__ inline uint32_t order_key(float x) {
  if (!(x > -INFINITY)) return 0u;
  if (x == 0.f) x = 0.f;
  const uint32_t u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ inline float key_value(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// key a ranks before key b: higher score, then lower item.
__device__ inline bool before(uint32_t ka, int32_t ia, uint32_t kb, int32_t ib) {
  return ka > kb || (ka == kb && ia < ib);
}

// One block per row. Three radix passes (11, 11, 10 bits from the top) find the key T of the k-th
// best item and how many items with key T are taken (the lowest indices); one pass collects the
// selection, which is then sorted.
__global__ void __launch_bounds__(kThreads) row_topk_kernel(const float* __restrict__ S, int64_t ld, int64_t N, int k,
                                                            int32_t* out_items, float* out_scores) {
  using Scan = cub::BlockScan<uint32_t, kThreads>;
  __shared__ typename Scan::TempStorage scan;
  __shared__ uint32_t hist[kBins];
  __shared__ uint32_t keys[kMaxDeviceK];
  __shared__ int32_t idx[kMaxDeviceK];
  __shared__ uint32_t found_digit, found_before;
  const int tid = threadIdx.x;
  const float* s = S + static_cast<int64_t>(blockIdx.x) * ld;
  uint32_t prefix = 0, mask = 0, remaining = static_cast<uint32_t>(k);
  bool take_all = false;
  const int shifts[3] = {21, 10, 0}, widths[3] = {11, 11, 10};
#pragma unroll
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = shifts[pass], nb = 1 << widths[pass], per = nb / kThreads;
    for (int i = tid; i < nb; i += kThreads) hist[i] = 0;
    __syncthreads();
    for (int64_t i = tid; i < N; i += kThreads) {
      const uint32_t key = order_key(s[i]);
      if (key && (key & mask) == prefix) atomicAdd(&hist[(key >> shift) & (nb - 1)], 1u);
    }
    __syncthreads();
    // Thread t holds the bins ranked t*per .. t*per+per-1 from the top.
    uint32_t local = 0;
    for (int j = 0; j < per; ++j) local += hist[nb - 1 - (tid * per + j)];
    uint32_t above, total;
    Scan(scan).ExclusiveSum(local, above, total);
    if (pass == 0 && total <= remaining) {  // no more valid items than k: all of them
      take_all = true;
      break;
    }
    for (int j = 0; j < per; ++j) {
      const int bin = nb - 1 - (tid * per + j);
      const uint32_t c = hist[bin];
      if (above < remaining && remaining <= above + c) {
        found_digit = static_cast<uint32_t>(bin);
        found_before = above;
      }
      above += c;
    }
    __syncthreads();
    prefix |= found_digit << shift;
    mask |= static_cast<uint32_t>(nb - 1) << shift;
    remaining -= found_before;
    __syncthreads();
  }
  __syncthreads();  // after a break, the scan's storage is about to be reused
  // Selected: keys > T, then the first need_eq items (by index) with key == T.
  const uint32_t T = take_all ? 0u : prefix;
  const uint32_t need_eq = take_all ? 0u : remaining;
  const uint32_t n_gt = take_all ? 0u : static_cast<uint32_t>(k) - need_eq;  // unknown when take_all: counted below
  uint32_t gt_base = 0, eq_base = 0;
  for (int64_t i0 = 0; i0 < N; i0 += kThreads) {
    const int64_t i = i0 + tid;
    const uint32_t key = i < N ? order_key(s[i]) : 0u;
    const bool gt = key > T, eq = !take_all && key == T;
    // Per chunk at most kThreads of each: two 16-bit counters in one scan.
    uint32_t pos, agg;
    Scan(scan).ExclusiveSum((gt ? 1u : 0u) | (eq ? 1u << 16 : 0u), pos, agg);
    if (gt) {
      const uint32_t at = gt_base + (pos & 0xffffu);
      keys[at] = key;
      idx[at] = static_cast<int32_t>(i);
    }
    if (eq && eq_base + (pos >> 16) < need_eq) {
      const uint32_t at = n_gt + eq_base + (pos >> 16);
      keys[at] = key;
      idx[at] = static_cast<int32_t>(i);
    }
    gt_base += agg & 0xffffu;
    eq_base += agg >> 16;
    __syncthreads();  // the scan's storage is reused
  }
  const uint32_t selected = take_all ? gt_base : static_cast<uint32_t>(k);
  uint32_t P = 1;
  while (P < selected) P <<= 1;
  for (uint32_t i = selected + tid; i < P; i += kThreads) {
    keys[i] = 0u;
    idx[i] = INT_MAX;
  }
  __syncthreads();
  for (uint32_t size = 2; size <= P; size <<= 1) {
    for (uint32_t stride = size / 2; stride > 0; stride >>= 1) {
      for (uint32_t i = tid; i < P; i += kThreads) {
        const uint32_t j = i ^ stride;
        if (j <= i) continue;
        const bool up = (i & size) == 0;
        const bool swap = up ? before(keys[j], idx[j], keys[i], idx[i]) : before(keys[i], idx[i], keys[j], idx[j]);
        if (swap) {
          const uint32_t tk = keys[i];
          keys[i] = keys[j];
          keys[j] = tk;
          const int32_t ti = idx[i];
          idx[i] = idx[j];
          idx[j] = ti;
        }
      }
      __syncthreads();
    }
  }
  int32_t* oi = out_items + static_cast<int64_t>(blockIdx.x) * k;
  float* os = out_scores + static_cast<int64_t>(blockIdx.x) * k;
  for (int j = tid; j < k; j += kThreads) {
    const bool have = static_cast<uint32_t>(j) < selected;
    oi[j] = have ? idx[j] : -1;
    os[j] = have ? key_value(keys[j]) : -INFINITY;
  }
}

// Pairs (row, item) of the chunk's rows get -inf.
__global__ void mask_kernel(float* S, int64_t ld, const int32_t* pairs, int64_t n) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e < n) S[pairs[2 * e] * ld + pairs[2 * e + 1]] = -INFINITY;
}

}  // namespace

void DeviceScorer::upload(const Params& P, const float* bias, cudaStream_t s) {
  O_.upload(P.out_rows(), static_cast<size_t>(P.n_items) * P.H, s);
  bias_.upload(bias, static_cast<size_t>(P.n_items), s);
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize (scoring upload)");
  ready_ = true;
}

void DeviceScorer::release() {
  O_ = {};
  bias_ = {};
  hs_ = {};
  scores_ = {};
  masked_ = {};
  items_ = {};
  top_scores_ = {};
  ready_ = false;
}

void DeviceScorer::top_k(const Params& P, const float* hs, int64_t M, int k, const std::vector<ItemSet>& exclude,
                         const std::vector<Boosts>& boosts, int32_t* out_items, float* out_scores, cudaStream_t s) {
  if (!ready_) throw std::logic_error("DeviceScorer::top_k before upload");
  if (k < 1 || k > kMaxDeviceK) throw std::invalid_argument("device top k needs 1 <= k <= 2048");
  const int H = P.H;
  const int64_t N = P.n_items;
  if (N > INT_MAX) throw std::invalid_argument("too many items for the device scorer");
  if (M == 0 || N == 0) return;
  // Rows per chunk: the chunk's scores within a quarter of the free memory (at least one row).
  size_t free_bytes = 0, total_bytes = 0;
  check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  const size_t row_bytes = static_cast<size_t>(N) * sizeof(float);
  const int64_t chunk = std::max<int64_t>(
      1, std::min<int64_t>({M, static_cast<int64_t>((free_bytes / 4 + scores_.size() * sizeof(float)) / row_bytes), 65535 * 64}));
  hs_.upload(hs, static_cast<size_t>(M) * H, s);
  scores_.reserve(static_cast<size_t>(chunk) * N);
  items_.reserve(static_cast<size_t>(chunk) * k);
  top_scores_.reserve(static_cast<size_t>(chunk) * k);
  std::vector<int32_t> pairs;
  Epilogue bias;
  bias.col_bias = bias_.get();
  for (int64_t r0 = 0; r0 < M; r0 += chunk) {
    const int64_t rows = std::min(chunk, M - r0);
    gemm(s, Op::N, Op::T, static_cast<int>(rows), static_cast<int>(N), H, hs_.get() + r0 * H, H, O_.get(), H,
         scores_.get(), N, bias);
    pairs.clear();
    for (int64_t r = 0; r < rows; ++r) {  // excluded and boosted items take no part in the scan
      for (int32_t item : exclude[r0 + r]) pairs.insert(pairs.end(), {static_cast<int32_t>(r), item});
      for (const auto& b : boosts[r0 + r]) pairs.insert(pairs.end(), {static_cast<int32_t>(r), b.first});
    }
    const int64_t n_pairs = static_cast<int64_t>(pairs.size() / 2);
    if (n_pairs > 0) {
      masked_.upload(pairs.data(), pairs.size(), s);
      mask_kernel<<<blocks_for(n_pairs, 256), 256, 0, s>>>(scores_.get(), N, masked_.get(), n_pairs);
      check_launch("mask_kernel");
    }
    row_topk_kernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(scores_.get(), N, N, k, items_.get(),
                                                                      top_scores_.get());
    check_launch("row_topk_kernel");
    items_.download(out_items + r0 * k, static_cast<size_t>(rows) * k, s);
    top_scores_.download(out_scores + r0 * k, static_cast<size_t>(rows) * k, s);
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize (top k)");  // `pairs` is reused
  }
}

}  // namespace hrnn::cuda
