#include "hrnn/repeat.h"

#include <algorithm>

namespace hrnn {

void repeat_projection(const Params& P, const float* h, float* hv) {
  const float* V = P.d.rV.data();
  for (int j = 0; j < kRepeatCols; ++j) hv[j] = 0.f;
  for (int k = 0; k < P.H; ++k)
    for (int j = 0; j < kRepeatCols; ++j) hv[j] += h[k] * V[k * kRepeatCols + j];
}

std::vector<std::pair<int32_t, float>> repeat_boosts(const Params& P, const float* h, const int32_t* items,
                                                     const double* ts, int64_t n) {
  std::vector<std::pair<int32_t, float>> out;
  float hv[kRepeatCols];
  repeat_projection(P, h, hv);
  const int64_t first = n > kRepeatWindow ? n - kRepeatWindow : 0;
  for (int64_t j = first; j < n; ++j) {
    if (items[j] < 0) continue;
    out.emplace_back(items[j], repeat_term(P, hv, pos_bucket(n - 1 - j), age_bucket(ts[n - 1] - ts[j])));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  size_t w = 0;  // merge the occurrences of one item
  for (size_t r = 0; r < out.size(); ++r) {
    if (w > 0 && out[w - 1].first == out[r].first) out[w - 1].second += out[r].second;
    else out[w++] = out[r];
  }
  out.resize(w);
  return out;
}

}  // namespace hrnn
