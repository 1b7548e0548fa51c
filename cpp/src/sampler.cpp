#include "hrnn/sampler.h"

#include <cmath>
#include <string>

#include "hrnn/errors.h"

namespace hrnn {

AliasSampler::AliasSampler(const double* weights, int64_t n, double alpha) {
  require(n > 0, "the sampler needs at least one item");
  require(std::isfinite(alpha) && alpha >= 0.0, "sample_alpha must be finite and >= 0");
  std::vector<double> p(n);
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    require(std::isfinite(weights[i]) && weights[i] >= 0.0,
            "item popularity must be finite and >= 0 (item " + std::to_string(i) + ")");
    p[i] = weights[i] > 0.0 ? std::pow(weights[i], alpha) : 0.0;
    total += p[i];
  }
  require(total > 0.0, "no item has a positive popularity");
  prob_.assign(n, 0.f);
  alias_.assign(n, 0);
  logq_.assign(n, 0.f);
  std::vector<int64_t> small, large;
  std::vector<double> scaled(n);
  for (int64_t i = 0; i < n; ++i) {
    p[i] /= total;
    logq_[i] = static_cast<float>(std::log(std::max(p[i], 1e-30)));
    scaled[i] = p[i] * n;
    (scaled[i] < 1.0 ? small : large).push_back(i);
  }
  while (!small.empty() && !large.empty()) {
    const int64_t s = small.back(), l = large.back();
    small.pop_back();
    prob_[s] = static_cast<float>(scaled[s]);
    alias_[s] = static_cast<int32_t>(l);
    scaled[l] -= 1.0 - scaled[s];
    if (scaled[l] < 1.0) {
      large.pop_back();
      small.push_back(l);
    }
  }
  for (int64_t i : large) prob_[i] = 1.f, alias_[i] = static_cast<int32_t>(i);
  for (int64_t i : small) prob_[i] = 1.f, alias_[i] = static_cast<int32_t>(i);
}

}  // namespace hrnn
