#include "hrnn/scoring.h"

#include <algorithm>

#include "hrnn/kernels.h"
#include "hrnn/parallel.h"
#include "hrnn/topk.h"

namespace hrnn {
namespace {

constexpr int64_t kTile = 2048;  // items per tile: a tile of output rows stays in cache across rows
constexpr int64_t kRows = 8;     // states scored together against one tile

bool contains(const ItemSet* s, int32_t item) {
  return s != nullptr && std::binary_search(s->begin(), s->end(), item);
}

bool boosted(const Boosts* b, int32_t item) {
  return b != nullptr && std::binary_search(b->begin(), b->end(), std::make_pair(item, 0.f),
                                            [](const auto& x, const auto& y) { return x.first < y.first; });
}

}  // namespace

void score_topk(const Params& P, const float* hs, int64_t M, int k, const std::vector<ItemSet>* exclude,
                const ItemSet* include, const std::vector<Boosts>* boosts, int32_t* out_items, float* out_scores,
                int num_threads) {
  const int H = P.H;
  const float* O = P.out_rows();
  const int64_t N = P.n_items;
  const int64_t blocks = (M + kRows - 1) / kRows;
  parallel_for(blocks, num_threads, [&](int64_t blk) {
    const int64_t r0 = blk * kRows, r1 = std::min(M, r0 + kRows);
    thread_local std::vector<TopK> heaps;
    heaps.resize(kRows);
    for (int64_t r = r0; r < r1; ++r) heaps[r - r0].reset(k);
    // Boosted items are skipped by the scan and offered once, with their boost, afterwards.
    auto offer = [&](int64_t r, int32_t item, float s) {
      TopK& t = heaps[r - r0];
      if (s <= t.threshold()) return;
      if (exclude && contains(&(*exclude)[r], item)) return;
      if (boosts && boosted(&(*boosts)[r], item)) return;
      t.push(s, item);
    };
    if (include) {
      for (int32_t item : *include)
        for (int64_t r = r0; r < r1; ++r)
          offer(r, item, dot(hs + r * H, O + static_cast<int64_t>(item) * H, H) + P.bo[item]);
    } else {
      for (int64_t i0 = 0; i0 < N; i0 += kTile) {
        const int64_t i1 = std::min(N, i0 + kTile);
        for (int64_t r = r0; r < r1; ++r) {
          const float* h = hs + r * H;
          for (int64_t i = i0; i < i1; ++i) offer(r, static_cast<int32_t>(i), dot(h, O + i * H, H) + P.bo[i]);
        }
      }
    }
    for (int64_t r = r0; r < r1; ++r) {
      if (boosts) {
        for (const auto& [item, boost] : (*boosts)[r]) {
          if ((exclude && contains(&(*exclude)[r], item)) || (include && !contains(include, item))) continue;
          heaps[r - r0].push(dot(hs + r * H, O + static_cast<int64_t>(item) * H, H) + P.bo[item] + boost, item);
        }
      }
      heaps[r - r0].write(out_items + r * k, out_scores + r * k);
    }
  }, 1);
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
