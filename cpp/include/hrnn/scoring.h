// Scoring every item for a set of session states (scores = O h + bo) and selecting the top k.
#pragma once
#include <cstdint>
#include <vector>

#include "hrnn/item_set.h"
#include "hrnn/params.h"
#include "hrnn/quant.h"

namespace hrnn {

// Per-item additions to a row's scores (the repeat boosts), sorted by item.
using Boosts = std::vector<std::pair<int32_t, float>>;

// The output layer as the first scoring pass reads it (quant.h). Built from the parameters; rebuild
// after they change.
using ScoringTable = QuantTable;

// For each of the M rows of hs [M x H]: the k best items (out_items/out_scores [M x k], best first,
// padded with -1 / -inf) by exact float32 score (a fused multiply-add chain over the hidden
// dimensions, then the bias; ties: the lower item index first). exclude: nullptr or M sets; include:
// nullptr or one sorted set that restricts the candidates of every row; boosts: nullptr or M lists
// added to those items' scores.
void score_topk(const Params& P, const ScoringTable& T, const float* hs, int64_t M, int k,
                const std::vector<ItemSet>* exclude, const ItemSet* include, const std::vector<Boosts>* boosts,
                int32_t* out_items, float* out_scores, int num_threads, ScoreKernels kernels = ScoreKernels::Auto);

// The same selection over fixed per-item scores (e.g. popularity for users without a state).
void fixed_topk(const float* scores, int64_t n_items, int k, const ItemSet* exclude, const ItemSet* include,
                int32_t* out_items, float* out_scores);

}  // namespace hrnn
