#include "hrnn/scoring.h"

#include <algorithm>
#include <numeric>

#include "hrnn/parallel.h"
#include "hrnn/topk.h"

namespace hrnn {
namespace {

constexpr int64_t kTileBlocks = 128;      // blocks per kernel call: 2,048 items, whose codes stay in L2
                                          // while every row of a task is scanned against them
constexpr int64_t kFirstBlocks = 2;       // the first call is short and each next one twice as long
                                          // (up to kTileBlocks), so that the threshold rises early
constexpr int64_t kRowsPerTask = 48;      // rows of a batch scanned together by one thread
// Items worth a thread of their own for a single query. Splitting a query costs a fork and a join,
// and on a busy machine the join can wait a whole scheduler time slice for a thread that has not
// started (measured: 20 ms instead of 80 us at 100,000 items), so only very large catalogues split.
constexpr int64_t kMinSplitItems = 524288;
constexpr int64_t kExactTile = 1024;       // items per call of the exact kernel in an exact scan

struct Candidate {
  int32_t item;
  float ub;
};

// One row's pass over a range of items.
struct RowScan {
  KthLargest lower;             // of the lower bounds: at most the k-th best exact score
  std::vector<Candidate> kept;  // the items whose upper bound reached it when scanned
};

bool contains(const ItemSet* s, int32_t item) {
  return s != nullptr && std::binary_search(s->begin(), s->end(), item);
}

// The item's entry in a row's boosts (sorted by item), or nullptr.
const std::pair<int32_t, float>* find_boost(const Boosts* b, int32_t item) {
  if (b == nullptr) return nullptr;
  const auto it = std::lower_bound(b->begin(), b->end(), item, [](const auto& x, int32_t i) { return x.first < i; });
  return it != b->end() && it->first == item ? &*it : nullptr;
}

}  // namespace

void score_topk(const Params& P, const ScoringTable& T, const float* hs, int64_t M, int k,
                const std::vector<ItemSet>* exclude, const ItemSet* include, const std::vector<Boosts>* boosts,
                int32_t* out_items, float* out_scores, int num_threads, ScoreKernels kernels) {
  const ScoreKernelSet& K = score_kernels(kernels);
  const int H = P.H;
  const int64_t N = T.N, n_blocks = T.n_blocks;
  const float* O = P.out_rows();
  const QuantView view = T.view();
  std::vector<QuantQuery> qs(M);  // ok == false: the row is scanned exactly
  if (kernels != ScoreKernels::Exact && T.finite && !include)
    for (int64_t r = 0; r < M; ++r) qs[r].prepare(T, hs + r * H);

  auto excluded = [&](int64_t r, int32_t item) { return exclude && contains(&(*exclude)[r], item); };
  auto boost_of = [&](int64_t r, int32_t item) { return boosts ? find_boost(&(*boosts)[r], item) : nullptr; };
  // Items with a positive boost are left out of the scan (the kernels' threshold does not know their
  // boost) and scored, with it, when the row is finished. A negative boost (the prior's floor for a
  // user's own items, a repeat score that says "not again") only lowers both bounds, so such an item
  // is scanned like any other: a user with thousands of them costs no exact score for each.
  auto keep = [&](int64_t r, RowScan& s, int32_t item, float ub, float lb) {
    if (excluded(r, item)) return;
    if (const auto* b = boost_of(r, item)) {
      if (b->second > 0.f) return;
      ub += b->second;
      lb += b->second;
    }
    if (lb > s.lower.value()) s.lower.push(lb);
    s.kept.push_back({item, ub});
    if (s.kept.size() >= 4096 + 4 * static_cast<size_t>(k)) {  // drop what the threshold has passed
      const float thr = s.lower.value();
      s.kept.erase(std::remove_if(s.kept.begin(), s.kept.end(), [&](const Candidate& c) { return c.ub < thr; }),
                   s.kept.end());
    }
  };

  // Rows [r0, r1) over blocks [b0, b1); row r's state is st[(r - r0) * stride].
  auto scan = [&](int64_t r0, int64_t r1, int64_t b0, int64_t b1, RowScan* st, int64_t stride) {
    thread_local std::vector<int32_t> items;
    thread_local std::vector<float> ubs;
    thread_local std::vector<int64_t> live;
    live.clear();
    for (int64_t r = r0; r < r1; ++r) {
      RowScan& s = st[(r - r0) * stride];
      s.lower.reset(k);
      s.kept.clear();
      if (qs[r].ok) {
        live.push_back(r);
        continue;
      }
      items.resize(kExactTile);
      ubs.resize(kExactTile);
      for (int64_t i0 = b0 * kQuantBlock; i0 < std::min(N, b1 * kQuantBlock); i0 += kExactTile) {
        const int64_t n = std::min(kExactTile, N - i0);
        std::iota(items.begin(), items.begin() + n, static_cast<int32_t>(i0));
        K.exact(O, T.bias.data(), H, hs + r * H, items.data(), n, ubs.data());
        for (int64_t j = 0; j < n; ++j)
          if (ubs[j] >= s.lower.value()) keep(r, s, items[j], ubs[j], ubs[j]);
      }
    }
    items.resize(static_cast<size_t>(kMaxScanRows) * kTileBlocks * kQuantBlock);
    ubs.resize(items.size());
    for (int64_t b = b0, tile = kFirstBlocks; b < b1; tile = std::min(2 * tile, kTileBlocks)) {
      const int64_t nb = std::min(tile, b1 - b), cap = nb * kQuantBlock;
      for (size_t g = 0; g < live.size(); g += kMaxScanRows) {
        const int R = static_cast<int>(std::min<size_t>(kMaxScanRows, live.size() - g));
        QuantRow rows[kMaxScanRows];
        int64_t n_out[kMaxScanRows];
        for (int j = 0; j < R; ++j) rows[j] = qs[live[g + j]].row(st[(live[g + j] - r0) * stride].lower.value());
        K.scan(view, rows, R, b, b + nb, items.data(), ubs.data(), cap, n_out);
        for (int j = 0; j < R; ++j) {
          const int64_t r = live[g + j];
          RowScan& s = st[(r - r0) * stride];
          for (int64_t c = 0; c < n_out[j]; ++c) {
            const int32_t item = items[j * cap + c];
            const float ub = ubs[j * cap + c];
            if (item < N) keep(r, s, item, ub, qs[r].lower(ub, T.scale[item]));
          }
        }
      }
      b += nb;
    }
  };

  // Row r's answer from its scans of the item ranges (none when include restricts the candidates):
  // the kept items whose upper bound reaches the k-th best lower bound, scored exactly.
  auto finish = [&](int64_t r, const RowScan* parts, int64_t n_parts) {
    thread_local std::vector<int32_t> cand;
    thread_local std::vector<float> exact, boost;
    thread_local KthLargest merged;
    thread_local TopK best;
    const float* h = hs + r * H;
    cand.clear();
    boost.clear();
    if (include) {
      for (int32_t item : *include)
        if (!excluded(r, item) && !boost_of(r, item)) cand.push_back(item);
      boost.assign(cand.size(), 0.f);
    } else {
      float L = parts[0].lower.value();
      if (n_parts > 1) {
        merged.reset(k);
        for (int64_t p = 0; p < n_parts; ++p)
          for (float x : parts[p].lower.values()) merged.push(x);
        L = merged.value();
      }
      for (int64_t p = 0; p < n_parts; ++p)
        for (const Candidate& c : parts[p].kept)
          if (c.ub >= L) {
            const auto* b = boost_of(r, c.item);
            cand.push_back(c.item);
            boost.push_back(b ? b->second : 0.f);
          }
    }
    if (boosts) {  // the boosted items the scan left out
      for (const auto& [item, b] : (*boosts)[r]) {
        if (excluded(r, item) || (include ? !contains(include, item) : !(b > 0.f))) continue;
        cand.push_back(item);
        boost.push_back(b);
      }
    }
    exact.resize(cand.size());
    K.exact(O, T.bias.data(), H, h, cand.data(), static_cast<int64_t>(cand.size()), exact.data());
    best.reset(k);
    for (size_t j = 0; j < cand.size(); ++j) best.push(exact[j] + boost[j], cand[j]);
    best.write(out_items + r * k, out_scores + r * k);
  };

  const int nt = resolve_threads(num_threads);
  if (include) {
    parallel_for(M, num_threads, [&](int64_t r) { finish(r, nullptr, 0); });
    return;
  }
  // Rows in tasks; with fewer rows than threads, the catalogue is split too and each row's
  // scans are merged.
  const int64_t chunks = M < nt ? std::clamp<int64_t>(N / kMinSplitItems, 1, nt) : 1;
  if (chunks == 1) {
    const int64_t per_task = std::clamp<int64_t>((M + nt - 1) / nt, 1, kRowsPerTask);
    parallel_for((M + per_task - 1) / per_task, num_threads, [&](int64_t task) {
      thread_local std::vector<RowScan> st;
      const int64_t r0 = task * per_task, r1 = std::min(M, r0 + per_task);
      st.resize(r1 - r0);
      scan(r0, r1, 0, n_blocks, st.data(), 1);
      for (int64_t r = r0; r < r1; ++r) finish(r, &st[r - r0], 1);
    });
    return;
  }
  std::vector<RowScan> st(M * chunks);
  const int64_t per_chunk = (n_blocks + chunks - 1) / chunks;
  parallel_for(chunks, num_threads, [&](int64_t ch) {
    scan(0, M, ch * per_chunk, std::min(n_blocks, (ch + 1) * per_chunk), st.data() + ch, chunks);
  });
  for (int64_t r = 0; r < M; ++r) finish(r, st.data() + r * chunks, chunks);
}

void fixed_topk(const float* scores, int64_t n_items, int k, const ItemSet* exclude, const ItemSet* include,
                int32_t* out_items, float* out_scores) {
  TopK t(k);
  auto offer = [&](int32_t i) {
    if (scores[i] > t.threshold() && !contains(exclude, i)) t.push(scores[i], i);
  };
  if (include)
    for (int32_t i : *include) offer(i);
  else
    for (int64_t i = 0; i < n_items; ++i) offer(static_cast<int32_t>(i));
  t.write(out_items, out_scores);
}

}  // namespace hrnn
