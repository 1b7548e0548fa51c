// Negative sampling by popularity^alpha (Walker's alias method: O(1) per draw).
#pragma once
#include <cstdint>
#include <vector>

#include "hrnn/rng.h"

namespace hrnn {

class AliasSampler {
 public:
  AliasSampler() = default;
  // weights: one non-negative weight per item (e.g. recency-weighted counts); alpha: the exponent.
  AliasSampler(const double* weights, int64_t n, double alpha);
  int32_t draw(Rng& rng) const {
    const uint64_t i = rng.below(prob_.size());
    return rng.uniformf() < prob_[i] ? static_cast<int32_t>(i) : alias_[i];
  }
  // log of each item's sampling probability (floored so that unsampled items stay finite).
  const std::vector<float>& logq() const { return logq_; }

 private:
  std::vector<float> prob_;
  std::vector<int32_t> alias_;
  std::vector<float> logq_;
};

}  // namespace hrnn
