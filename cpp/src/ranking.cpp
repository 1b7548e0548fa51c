#include "hrnn/ranking.h"

#include <algorithm>
#include <string>
#include <vector>

#include "hrnn/advance.h"
#include "hrnn/errors.h"
#include "hrnn/kernels.h"
#include "hrnn/parallel.h"

namespace hrnn {

void next_item_ranks(const Params& P, const EventArrays& prefix, const EventArrays& test, int32_t* ranks,
                     int num_threads) {
  prefix.validate(P.n_items);
  test.validate(P.n_items);
  require(prefix.n_users == test.n_users, "prefix and test must have the same users");
  const int H = P.H;
  const float* O = P.out_rows();
  parallel_for(test.n_users, num_threads, [&](int64_t user) {
    const int64_t a = prefix.offsets[user], b = prefix.offsets[user + 1];
    const int64_t ta = test.offsets[user], tb = test.offsets[user + 1];
    if (ta == tb) return;
    if (b == a) invalid("next_item_ranks: user " + std::to_string(user) + " has test events but no history");
    std::vector<float> u(P.d.u0), h(H, 0.f), gaps;
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
        const float sy = dot(h.data(), O + static_cast<int64_t>(y) * H, H) + P.bo[y];
        int32_t higher = 0;
        for (int64_t i = 0; i < P.n_items; ++i) higher += dot(h.data(), O + i * H, H) + P.bo[i] > sy;
        ranks[j] = higher + 1;
      }
      const float gap = static_cast<float>(test.timestamps[j] - last);
      advance(P, u.data(), h.data(), false, test.items + j, &gap, test.new_session + j, 1);
      last = test.timestamps[j];
    }
  }, 4);
}

}  // namespace hrnn
