// The transition prior (docs/engine.md, "Transition prior"): at query time the model's scores are
// combined with a smoothed item-to-item transition probability out of the user's last events, mixed
// with the chance of consuming a recent item again (the repeat curve), both counted on the training
// events. Training does not use it.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "hrnn/item_set.h"

namespace hrnn {

constexpr int kTransitionSources = 10;        // the last events whose successors count
constexpr float kTransitionDecay = 0.8f;      // weight of a source k events ago: decay^k
constexpr float kTransitionSmoothing = 30.f;  // pseudo-counts pulling each row towards popularity
// On a log without repeats an item of the user's history has the prior P_j / ((1 - r) G pop_j) = this,
// not 0: log(0) would rule the item out whatever the network says.
constexpr double kSeenFloor = 1e-4;

class Transitions {
 public:
  // weight: the prior's exponent (0 = off). offsets [n_items + 1], successors / counts: each source
  // item's kept successors (CSR, counts > 0); out [n_items]: every transition out of each item,
  // including those not kept (>= the kept ones' sum); popularity [n_items]: >= 0, positive sum;
  // repeat_curve: q[p] in [0, 1], the chance that the next item is the one p + 1 events back, for
  // p < kRepeatWindow (may be empty). Throws std::invalid_argument (changing nothing) when the
  // arrays are inconsistent. Each item's successors are kept in item order (a query merges them).
  void set(int64_t n_items, float weight, std::vector<int64_t> offsets, std::vector<int32_t> successors,
           std::vector<float> counts, std::vector<float> out, const double* popularity,
           std::vector<float> repeat_curve);
  void clear() { *this = Transitions(); }

  bool active() const { return weight_ > 0.f && has_table(); }
  bool has_table() const { return !out_.empty(); }
  float weight() const { return weight_; }
  // Every item's bias in the query scores under prior weight w: bo plus w * log(popularity share)
  // (bo alone without a table).
  std::vector<float> item_bias(const std::vector<float>& bo, float w) const;
  std::vector<float> item_bias(const std::vector<float>& bo) const { return item_bias(bo, active() ? weight_ : 0.f); }
  // A log without repeats (a curve of zeros): every item of a user's history gets the floor.
  bool rules_out_seen() const { return has_table() && !repeat_curve_.empty() && !has_repeats_; }
  // The recent events a query reads (0 when off).
  int64_t history() const;
  // The sparse part at weight 1, log(1 + (S_j + R_j / (1 - r)) / (G * pop_j)), of each successor j of
  // the last kTransitionSources of the recent events and of each item j among the last
  // |repeat_curve| of them (items oldest first, -1 = unknown); when rules_out_seen(), log(kSeenFloor)
  // for every item of `seen` (the user's whole history, sorted, each item once; required then)
  // instead: sorted by item, one entry per item; empty without a table. sources = false: no recent
  // event is a transition source (a query that starts a session: transitions are counted within
  // sessions), the transition part is the popularity alone.
  std::vector<std::pair<int32_t, double>> sparse_terms(const int32_t* items, int64_t n, const ItemSet* seen,
                                                       bool sources = true) const;
  // Adds weight * sparse_terms to `boosts`, which is sorted by item with one entry per item before
  // and after (nothing when off).
  void add_boosts(const int32_t* items, int64_t n, const ItemSet* seen,
                  std::vector<std::pair<int32_t, float>>& boosts, bool sources = true) const;

  const std::vector<int64_t>& offsets() const { return offsets_; }
  const std::vector<int32_t>& successors() const { return successors_; }
  const std::vector<float>& counts() const { return counts_; }
  const std::vector<float>& out() const { return out_; }
  const std::vector<float>& repeat_curve() const { return repeat_curve_; }

 private:
  float weight_ = 0.f;
  std::vector<int64_t> offsets_;
  std::vector<int32_t> successors_;
  std::vector<float> counts_, out_, repeat_curve_;
  bool has_repeats_ = false;  // some q[p] > 0
  std::vector<float> pop_;       // popularity shares
  std::vector<double> log_pop_;  // and their logs
};

}  // namespace hrnn
