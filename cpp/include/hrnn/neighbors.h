// Session-kNN votes (V-SKNN, as baselines.SessionKNN computes them) for the neighbours of a user's
// last session: the second expert of session-start queries, mixed with the network's softmax as
// (1 - beta) p + beta v (docs/engine.md, "Session-start neighbours").
#pragma once
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "hrnn/item_set.h"

namespace hrnn {

// Votes or boosts: (item, value) sorted by item.
using SparseItems = std::vector<std::pair<int32_t, float>>;

constexpr int64_t kMaxNeighborSession = 1000;  // the current session's last events that are matched

struct NeighborIndex {
  // The training sessions' distinct items (CSR), each item's sessions most recent first (CSR), each
  // session's rank by its end time, and per training user its last session and its event count then.
  std::vector<int64_t> session_offsets, item_offsets, item_sessions, recency, own_session, fit_events;
  std::vector<int32_t> session_items;
  int k = 100, sample_size = 500;
  float beta = 0.f;  // in [0, 1): the votes' share of the mixture; 0 = off

  bool active() const { return beta > 0.f && session_offsets.size() > 1; }
  // Throws std::invalid_argument unless the arrays are consistent and every item is below n_items.
  void validate(int64_t n_items) const;
  // The training session the current session of `user` is (its last, unless the current one started
  // after the user's training events), or -1: a session is never its own neighbour.
  int64_t own(int64_t user, int64_t session_begin) const;
  // The votes, normalised to sum 1, of the k sessions most similar to the session items[0, n) (time
  // order, -1 = unknown), leaving out `own` and the items of `drop` (sorted; nullptr: none).
  SparseItems votes(const int32_t* items, int64_t n, int64_t own, const ItemSet* drop) const;
};

// The network's distribution p in the mixture is its softmax over its kNormItems best candidates:
// normalising over the whole catalogue would read every item's exact score (a session-start query
// of a 37,000-item model took 0.7 ms instead of 0.08; the top 200 take 0.17).
constexpr int kNormItems = 200;

// log sum exp of the kNormItems largest of scores[0, n) (of all of them when fewer), in double.
double top_log_sum_exp(const float* scores, int64_t n);

// The mixture's score of an item with network score s and vote v: log((1 - beta) exp(s - log_norm) + beta v).
inline float mixed_score(float s, double log_norm, float v, float beta) {
  const double p = std::log1p(-static_cast<double>(beta)) + s - log_norm;  // in log space, however low
  return static_cast<float>(v > 0.f ? std::log(std::exp(p) + static_cast<double>(beta) * v) : p);
}

}  // namespace hrnn
