#include <algorithm>
#include <climits>
#include <iterator>
#include <cub/block/block_scan.cuh>
#include <stdexcept>

#include "candidates.cuh"
#include "gemm.cuh"
#include "select.cuh"
#include "topk.cuh"

namespace hrnn::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kBins = 2048;

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
  block_bitonic_sort(keys, idx, P);
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
  o16_ready_ = false;
}

void DeviceScorer::release() {
  const DeviceScoring mode = mode_;
  *this = DeviceScorer{};
  mode_ = mode;
}

// Rows per chunk: the chunk's buffers within a quarter of the free memory (at least one row).
static int64_t rows_per_chunk(int64_t M, size_t row_bytes, size_t held_bytes) {
  size_t free_bytes = 0, total_bytes = 0;
  check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  return std::max<int64_t>(1, std::min<int64_t>({M, static_cast<int64_t>((free_bytes / 4 + held_bytes) / row_bytes),
                                                 65535 * 64}));
}

void DeviceScorer::top_k(const Params& P, const float* hs, int64_t M, int k, const std::vector<ItemSet>& exclude,
                         const std::vector<Boosts>& boosts, int32_t* out_items, float* out_scores, cudaStream_t s) {
  if (!ready_) throw std::logic_error("DeviceScorer::top_k before upload");
  if (k < 1 || k > kMaxDeviceK) throw std::invalid_argument("device top k needs 1 <= k <= 2048");
  if (P.n_items > INT_MAX) throw std::invalid_argument("too many items for the device scorer");
  if (M == 0 || P.n_items == 0) return;
  hs_.upload(hs, static_cast<size_t>(M) * P.H, s);
  std::vector<int64_t> rows;
  bool answered = false;
  try {
    answered = candidate_top_k(P, M, k, exclude, boosts, out_items, out_scores, rows, s);
  } catch (const OutOfMemory&) {  // the full pass needs less memory per row
    (void)cudaStreamSynchronize(s);
    rows.clear();
  }
  if (!answered) {
    rows.resize(M);
    for (int64_t r = 0; r < M; ++r) rows[r] = r;
  }
  if (!rows.empty()) full_top_k(P, hs, M, rows, k, exclude, boosts, out_items, out_scores, s);
}

void DeviceScorer::full_top_k(const Params& P, const float* hs, int64_t M, const std::vector<int64_t>& rows, int k,
                              const std::vector<ItemSet>& exclude, const std::vector<Boosts>& boosts,
                              int32_t* out_items, float* out_scores, cudaStream_t s) {
  const int H = P.H;
  const int64_t N = P.n_items, R = static_cast<int64_t>(rows.size());
  const float* dev_hs = hs_.get();
  if (R < M) {  // a subset: its rows, contiguous
    std::vector<float> sub(static_cast<size_t>(R) * H);
    for (int64_t i = 0; i < R; ++i) std::copy_n(hs + rows[i] * H, H, sub.data() + i * H);
    hs_sub_.upload(sub.data(), sub.size(), s);
    dev_hs = hs_sub_.get();
  }
  const int64_t chunk = rows_per_chunk(R, static_cast<size_t>(N) * sizeof(float), scores_.size() * sizeof(float));
  scores_.reserve(static_cast<size_t>(chunk) * N);
  items_.reserve(static_cast<size_t>(chunk) * k);
  top_scores_.reserve(static_cast<size_t>(chunk) * k);
  std::vector<int32_t> pairs, got_items(static_cast<size_t>(chunk) * k);
  std::vector<float> got_scores(got_items.size());
  Epilogue bias;
  bias.col_bias = bias_.get();
  for (int64_t r0 = 0; r0 < R; r0 += chunk) {
    const int64_t n = std::min(chunk, R - r0);
    gemm(s, Op::N, Op::T, static_cast<int>(n), static_cast<int>(N), H, dev_hs + r0 * H, H, O_.get(), H,
         scores_.get(), N, bias);
    pairs.clear();
    for (int64_t i = 0; i < n; ++i) {  // excluded and boosted items take no part in the scan
      const int64_t r = rows[r0 + i];
      for (int32_t item : exclude[r]) pairs.insert(pairs.end(), {static_cast<int32_t>(i), item});
      for (const auto& b : boosts[r]) pairs.insert(pairs.end(), {static_cast<int32_t>(i), b.first});
    }
    const int64_t n_pairs = static_cast<int64_t>(pairs.size() / 2);
    if (n_pairs > 0) {
      masked_.upload(pairs.data(), pairs.size(), s);
      mask_kernel<<<blocks_for(n_pairs, 256), 256, 0, s>>>(scores_.get(), N, masked_.get(), n_pairs);
      check_launch("mask_kernel");
    }
    row_topk_kernel<<<static_cast<unsigned>(n), kThreads, 0, s>>>(scores_.get(), N, N, k, items_.get(),
                                                                   top_scores_.get());
    check_launch("row_topk_kernel");
    items_.download(got_items.data(), static_cast<size_t>(n) * k, s);
    top_scores_.download(got_scores.data(), static_cast<size_t>(n) * k, s);
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize (top k)");  // `pairs` and the results are reused
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(got_items.data() + i * k, k, out_items + rows[r0 + i] * k);
      std::copy_n(got_scores.data() + i * k, k, out_scores + rows[r0 + i] * k);
    }
  }
}

bool DeviceScorer::candidate_top_k(const Params& P, int64_t M, int k, const std::vector<ItemSet>& exclude,
                                   const std::vector<Boosts>& boosts, int32_t* out_items, float* out_scores,
                                   std::vector<int64_t>& unanswered, cudaStream_t s) {
  if (mode_ == DeviceScoring::Full) return false;
  const int H = P.H, KP = padded_hidden(H);
  const int64_t N = P.n_items;
  if ((mode_ == DeviceScoring::Auto && N < kCandidateMinItems) || !collect_fits(KP)) return false;
  // Each row's masked items, as offsets into one array: the union of its exclusions and boosted
  // items (both sorted and unique already).
  std::vector<int32_t> mask_off(static_cast<size_t>(M) + 1, 0), mask_items, boosted;
  int max_masked = 0;
  for (int64_t r = 0; r < M; ++r) {
    const size_t at = mask_items.size();
    boosted.clear();
    for (const auto& b : boosts[r]) boosted.push_back(b.first);
    std::set_union(exclude[r].begin(), exclude[r].end(), boosted.begin(), boosted.end(),
                   std::back_inserter(mask_items));
    if (mask_items.size() > static_cast<size_t>(INT_MAX)) return false;
    mask_off[r + 1] = static_cast<int32_t>(mask_items.size());
    const int m = static_cast<int>(mask_items.size() - at);
    if (m <= kMaxMasked) max_masked = std::max(max_masked, m);  // the others get no threshold
  }
  // The subset: every stride-th item, so that about kp * stride (<= 1024) items pass its threshold.
  const int64_t kp = static_cast<int64_t>(k) + max_masked;
  const int stride = static_cast<int>(std::clamp<int64_t>(1024 / kp, 1, 64));
  const int64_t n_sub = (N + stride - 1) / stride;
  if ((mode_ == DeviceScoring::Auto && stride < 4) || kp > kMaxDeviceK || n_sub < kp) return false;

  if (!o16_ready_) {  // the bf16 output layer, once per upload
    O16_.reserve(static_cast<size_t>(N) * KP);
    onorm_.reserve(static_cast<size_t>(N));
    to_bf16_rows(s, O_.get(), N, H, KP, O16_.get(), onorm_.get(), 1.f);
    o16_ready_ = true;
  }
  sub_bias_.reserve(static_cast<size_t>(n_sub));
  gather_strided(s, bias_.get(), n_sub, stride, sub_bias_.get());
  mask_items_.upload(mask_items.data(), mask_items.size(), s);
  const size_t row_bytes = static_cast<size_t>(n_sub) * sizeof(float) + static_cast<size_t>(kp) * 8 +
                           static_cast<size_t>(kCandidateCap) * 4 + static_cast<size_t>(KP) * 2 + 32 +
                           static_cast<size_t>(k) * 8;
  const int64_t chunk = rows_per_chunk(M, row_bytes, scores_.size() * sizeof(float));
  scores_.reserve(static_cast<size_t>(chunk) * n_sub);
  sub_items_.reserve(static_cast<size_t>(chunk) * kp);
  sub_top_.reserve(static_cast<size_t>(chunk) * kp);
  h16_.reserve(static_cast<size_t>(chunk) * KP);
  for (auto* b : {&hnorm_, &tau_}) b->reserve(static_cast<size_t>(chunk));
  counts_.reserve(static_cast<size_t>(chunk));
  cand_.reserve(static_cast<size_t>(chunk) * kCandidateCap);
  items_.reserve(static_cast<size_t>(chunk) * k);
  top_scores_.reserve(static_cast<size_t>(chunk) * k);
  need_full_.reserve(static_cast<size_t>(chunk));
  std::vector<int32_t> off(static_cast<size_t>(chunk) + 1);
  std::vector<uint8_t> need(static_cast<size_t>(chunk));
  Epilogue sub_bias;
  sub_bias.col_bias = sub_bias_.get();
  for (int64_t r0 = 0; r0 < M; r0 += chunk) {
    const int64_t n = std::min(chunk, M - r0);
    const float* h = hs_.get() + r0 * H;
    for (int64_t i = 0; i <= n; ++i) off[i] = mask_off[r0 + i] - mask_off[r0];
    mask_off_.upload(off.data(), static_cast<size_t>(n) + 1, s);
    const int32_t* masked = mask_items_.get() + mask_off[r0];
    // 1. The threshold: the (k + m)-th best exact score of the subset (the same GEMM as the full pass,
    // never split over K, so that these scores are the full pass's bit for bit).
    gemm(s, Op::N, Op::T, static_cast<int>(n), static_cast<int>(n_sub), H, h, H, O_.get(),
         static_cast<int64_t>(stride) * H, scores_.get(), n_sub, sub_bias);
    row_topk_kernel<<<static_cast<unsigned>(n), kThreads, 0, s>>>(scores_.get(), n_sub, n_sub, static_cast<int>(kp),
                                                                   sub_items_.get(), sub_top_.get());
    check_launch("row_topk_kernel");
    row_thresholds(s, sub_top_.get(), n, static_cast<int>(kp), k, mask_off_.get(), tau_.get());
    // 2. The candidates, 3. their exact top k.
    to_bf16_rows(s, h, n, H, KP, h16_.get(), hnorm_.get(), kApproxError);
    counts_.zero(static_cast<size_t>(n), s);
    collect_candidates(s, O16_.get(), bias_.get(), onorm_.get(), N, h16_.get(), hnorm_.get(), tau_.get(),
                       static_cast<int>(n), KP, kCandidateCap, counts_.get(), cand_.get());
    rescore_topk(s, O_.get(), bias_.get(), H, h, static_cast<int>(n), counts_.get(), cand_.get(), kCandidateCap,
                 tau_.get(), mask_off_.get(), masked, k, items_.get(), top_scores_.get(), need_full_.get());
    items_.download(out_items + r0 * k, static_cast<size_t>(n) * k, s);
    top_scores_.download(out_scores + r0 * k, static_cast<size_t>(n) * k, s);
    need_full_.download(need.data(), static_cast<size_t>(n), s);
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize (candidates)");  // `off` and `need` are reused
    for (int64_t i = 0; i < n; ++i)
      if (need[i]) unanswered.push_back(r0 + i);
  }
  return true;
}

}  // namespace hrnn::cuda
