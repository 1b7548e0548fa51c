// Scoring every item for a set of session states (scores = O h + bo) and selecting the top k.
#pragma once
#include <cstdint>
#include <vector>

#include "hrnn/params.h"

namespace hrnn {

// Items a row must not return, sorted ascending (for binary search).
using ItemSet = std::vector<int32_t>;
// Per-item additions to a row's scores (the repeat boosts), sorted by item.
using Boosts = std::vector<std::pair<int32_t, float>>;

// The output layer laid out for scoring many items at once: O transposed and zero-padded for the GEMM
// kernels ([Hp x Np]), with the biases (bo, plus whatever per-item term the owner adds after
// build: every score, scanned or exact, uses `bias`). Built from the parameters; rebuild after they
// change.
struct ScoringTable {
  int H = 0, Hp = 0;
  int64_t N = 0, Np = 0;
  std::vector<float> OT, bias;
  void build(const Params& P);
};

// For each of the M rows of hs [M x H]: the k best items (out_items/out_scores [M x k], best first,
// padded with -1 / -inf). exclude: nullptr or M sets; include: nullptr or one sorted set that
// restricts the candidates of every row; boosts: nullptr or M lists added to those items' scores.
void score_topk(const Params& P, const ScoringTable& T, const float* hs, int64_t M, int k,
                const std::vector<ItemSet>* exclude, const ItemSet* include, const std::vector<Boosts>* boosts,
                int32_t* out_items, float* out_scores, int num_threads);

// The same selection over fixed per-item scores (e.g. popularity for users without a state).
void fixed_topk(const float* scores, int64_t n_items, int k, const ItemSet* exclude, const ItemSet* include,
                int32_t* out_items, float* out_scores);

}  // namespace hrnn
