#include "hrnn/scoring.h"

#include <algorithm>

#include "hrnn/gemm.h"
#include "hrnn/kernels.h"
#include "hrnn/parallel.h"
#include "hrnn/topk.h"

namespace hrnn {
namespace {

constexpr int64_t kTile = 1024;       // items per tile: the tile's scores stay in cache while scanned
constexpr int64_t kRows = 16;        // states scored together against one tile
constexpr int64_t kMinChunk = 32768;  // items worth a thread of their own for a single query

bool contains(const ItemSet* s, int32_t item) {
  return s != nullptr && std::binary_search(s->begin(), s->end(), item);
}

bool boosted(const Boosts* b, int32_t item) {
  return b != nullptr && std::binary_search(b->begin(), b->end(), std::make_pair(item, 0.f),
                                            [](const auto& x, const auto& y) { return x.first < y.first; });
}

}  // namespace

void ScoringTable::build(const Params& P) {
  H = P.H, Hp = pad_to_gemm(P.H), N = P.n_items, Np = (P.n_items + kGemmAlign - 1) / kGemmAlign * kGemmAlign;
  OT.assign(static_cast<size_t>(Hp) * Np, 0.f);
  const float* O = P.out_rows();
  for (int64_t i = 0; i < N; ++i)
    for (int k = 0; k < H; ++k) OT[static_cast<size_t>(k) * Np + i] = O[i * H + k];
  bias.assign(P.bo.begin(), P.bo.end());
}

void score_topk(const Params& P, const ScoringTable& T, const float* hs, int64_t M, int k,
                const std::vector<ItemSet>* exclude, const ItemSet* include, const std::vector<Boosts>* boosts,
                int32_t* out_items, float* out_scores, int num_threads) {
  const int H = P.H, Hp = T.Hp;
  const float* O = P.out_rows();
  const int64_t N = T.N;
  auto exact = [&](int64_t r, int32_t item) {
    return dot(hs + r * H, O + static_cast<int64_t>(item) * H, H) + T.bias[item];
  };
  // Rows in blocks; when there are fewer blocks than threads, the catalogue is split too, and the
  // partial top-k lists are merged.
  const int nt = resolve_threads(num_threads);
  const int64_t blocks = (M + kRows - 1) / kRows;
  const int64_t chunks = include || blocks >= nt ? 1 : std::max<int64_t>(1, std::min<int64_t>(nt, N / kMinChunk));
  const int64_t chunk_items = (N + chunks - 1) / chunks / kTile * kTile + kTile;
  std::vector<float> hsp(static_cast<size_t>(M) * Hp, 0.f);
  for (int64_t r = 0; r < M; ++r) std::copy(hs + r * H, hs + (r + 1) * H, hsp.begin() + r * Hp);
  std::vector<int32_t> part_items(static_cast<size_t>(chunks) * M * k);
  std::vector<float> part_scores(part_items.size());

  parallel_for(blocks * chunks, num_threads, [&](int64_t task) {
    const int64_t blk = task / chunks, ch = task % chunks;
    const int64_t r0 = blk * kRows, r1 = std::min(M, r0 + kRows), rows = r1 - r0;
    thread_local std::vector<TopK> heaps;
    thread_local std::vector<float> buf;
    heaps.resize(kRows);
    buf.resize(static_cast<size_t>(kRows) * kTile);
    for (int64_t r = r0; r < r1; ++r) heaps[r - r0].reset(k);
    // Boosted items are skipped by the scan and offered once, with their boost, at the merge.
    auto offer = [&](int64_t r, int32_t item, float s) {
      TopK& t = heaps[r - r0];
      if (s <= t.threshold()) return;
      if (exclude && contains(&(*exclude)[r], item)) return;
      if (boosts && boosted(&(*boosts)[r], item)) return;
      t.push(s, item);
    };
    if (include) {
      for (int32_t item : *include)
        for (int64_t r = r0; r < r1; ++r) offer(r, item, exact(r, item));
    } else {
      const int64_t end = std::min(T.Np, (ch + 1) * chunk_items);
      for (int64_t i0 = ch * chunk_items; i0 < end; i0 += kTile) {
        const int64_t width = std::min(kTile, end - i0);
        gemm_nn(static_cast<int>(rows), static_cast<int>(width), Hp, hsp.data() + r0 * Hp, Hp, T.OT.data() + i0,
                static_cast<int>(T.Np), buf.data(), static_cast<int>(width), false);
        const int64_t valid = std::min(width, N - i0);
        for (int64_t r = r0; r < r1; ++r) {
          const float* sc = buf.data() + (r - r0) * width;
          const float thr = heaps[r - r0].threshold();
          for (int64_t j = 0; j < valid; ++j) {
            const float s = sc[j] + T.bias[i0 + j];
            if (s > thr) offer(r, static_cast<int32_t>(i0 + j), s);
          }
        }
      }
    }
    for (int64_t r = r0; r < r1; ++r) {
      const size_t at = (static_cast<size_t>(ch) * M + r) * k;
      heaps[r - r0].write(part_items.data() + at, part_scores.data() + at);
    }
  }, 1);

  for (int64_t r = 0; r < M; ++r) {
    TopK t(k);
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const size_t at = (static_cast<size_t>(ch) * M + r) * k;
      for (int j = 0; j < k && part_items[at + j] >= 0; ++j) t.push(part_scores[at + j], part_items[at + j]);
    }
    if (boosts) {
      for (const auto& [item, boost] : (*boosts)[r]) {
        if ((exclude && contains(&(*exclude)[r], item)) || (include && !contains(include, item))) continue;
        t.push(exact(r, item) + boost, item);
      }
    }
    t.write(out_items + r * k, out_scores + r * k);
  }
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
