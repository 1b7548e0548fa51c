#include "hrnn/advance.h"

#include <algorithm>
#include <cstring>

#include "hrnn/parallel.h"
#include "hrnn/step.h"

namespace hrnn {

void advance(const Params& P, float* u, float* h, bool fresh, const int32_t* items, const float* gaps,
             const uint8_t* new_session, int64_t n) {
  const int H = P.H;
  thread_local std::vector<float> cache, zeros;
  cache.resize(StepCache::floats(H));
  zeros.assign(H, 0.f);
  for (int64_t i = 0; i < n; ++i) {
    const float* x = items[i] >= 0 ? P.E.data() + static_cast<int64_t>(items[i]) * H : zeros.data();
    uint8_t flags = new_session[i] ? kNewSession : 0;
    if (fresh && i == 0) flags |= kFresh;
    step_forward(P, x, gaps[i], flags, u, h, cache.data());
    std::memcpy(u, cache.data() + StepCache::U * H, sizeof(float) * H);
    std::memcpy(h, cache.data() + StepCache::Hout * H, sizeof(float) * H);
  }
}

void compute_states(const Params& P, const EventArrays& ev, float* U, float* Hs, int num_threads) {
  const int H = P.H;
  parallel_for(ev.n_users, num_threads, [&](int64_t user) {
    const int64_t a = ev.offsets[user], b = ev.offsets[user + 1];
    float* u = U + user * H;
    float* h = Hs + user * H;
    std::copy(P.d.u0.begin(), P.d.u0.end(), u);
    std::fill(h, h + H, 0.f);
    thread_local std::vector<float> gaps;
    gaps.resize(b - a);
    for (int64_t i = a; i < b; ++i)
      gaps[i - a] = i > a ? static_cast<float>(ev.timestamps[i] - ev.timestamps[i - 1]) : 0.f;
    advance(P, u, h, true, ev.items + a, gaps.data(), ev.new_session + a, b - a);
  }, 16);
}

}  // namespace hrnn
