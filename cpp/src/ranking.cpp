#include "hrnn/ranking.h"

#include <algorithm>
#include <string>
#include <vector>

#include "hrnn/advance.h"
#include "hrnn/errors.h"
#include "hrnn/kernels.h"
#include "hrnn/parallel.h"
#include "hrnn/repeat.h"

namespace hrnn {

void next_item_ranks(const Params& P, const Transitions& tr, const EventArrays& prefix, const EventArrays& test,
                     int32_t* ranks, int num_threads) {
  prefix.validate(P.n_items);
  test.validate(P.n_items);
  require(prefix.n_users == test.n_users, "prefix and test must have the same users");
  const int H = P.H;
  const float* O = P.out_rows();
  const std::vector<float> bias = tr.item_bias(P.bo);
  parallel_for(test.n_users, num_threads, [&](int64_t user) {
    const int64_t a = prefix.offsets[user], b = prefix.offsets[user + 1];
    const int64_t ta = test.offsets[user], tb = test.offsets[user + 1];
    if (ta == tb) return;
    if (b == a) invalid("next_item_ranks: user " + std::to_string(user) + " has test events but no history");
    std::vector<float> u(P.d.u0), h(H, 0.f), gaps;
    std::vector<int32_t> recent_items;
    std::vector<double> recent_ts;
    gaps.reserve(b - a);
    for (int64_t i = a; i < b; ++i)
      gaps.push_back(i > a ? static_cast<float>(prefix.timestamps[i] - prefix.timestamps[i - 1]) : 0.f);
    advance(P, u.data(), h.data(), true, prefix.items + a, gaps.data(), prefix.new_session + a, b - a);
    double last = prefix.timestamps[b - 1];
    for (int64_t j = ta; j < tb; ++j) {
      const int32_t y = test.items[j];
      if (y < 0) {
        ranks[j] = 0;
      } else {
        // Recent events (prefix and test so far, oldest first) give the repeat and transition boosts.
        const int64_t seen = (b - a) + (j - ta);
        const int64_t n_recent = seen < kRepeatWindow ? seen : kRepeatWindow;
        recent_items.clear();
        recent_ts.clear();
        for (int64_t q = seen - n_recent; q < seen; ++q) {
          const bool in_prefix = q < b - a;
          recent_items.push_back(in_prefix ? prefix.items[a + q] : test.items[ta + q - (b - a)]);
          recent_ts.push_back(in_prefix ? prefix.timestamps[a + q] : test.timestamps[ta + q - (b - a)]);
        }
        auto boosts = repeat_boosts(P, h.data(), recent_items.data(), recent_ts.data(), n_recent);
        tr.add_boosts(recent_items.data(), n_recent, boosts);
        auto score = [&](int32_t i) { return dot(h.data(), O + static_cast<int64_t>(i) * H, H) + bias[i]; };
        float sy = score(y);
        for (const auto& [item, boost] : boosts)
          if (item == y) sy += boost;
        int32_t higher = 0;
        for (int64_t i = 0; i < P.n_items; ++i)  // y itself never counts (its own boost may be negative)
          higher += i != y && score(static_cast<int32_t>(i)) > sy;
        for (const auto& [item, boost] : boosts)  // the boosted items' own scores replace their base ones
          if (item != y) higher += (score(item) + boost > sy) - (score(item) > sy);
        ranks[j] = higher + 1;
      }
      const float gap = static_cast<float>(test.timestamps[j] - last);
      advance(P, u.data(), h.data(), false, test.items + j, &gap, test.new_session + j, 1);
      last = test.timestamps[j];
    }
  }, 4);
}

}  // namespace hrnn
