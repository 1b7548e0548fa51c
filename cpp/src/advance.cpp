#include "hrnn/advance.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "hrnn/lane_block.h"
#include "hrnn/parallel.h"
#include "hrnn/step.h"
#include "hrnn/window.h"

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

namespace {

constexpr int kStateLanes = 32, kStateSteps = 32;

// One thread's block of lanes running users' whole histories forward, a window of steps at a time,
// lanes refilled as users finish (the training engine's forward, without targets).
void states_in_lanes(const Params& P, const PackedWeights& W, const EventArrays& ev,
                     const std::vector<int64_t>& users, std::atomic<size_t>& next, LaneBlock& lb, Window& w,
                     float* U, float* Hs) {
  const int H = P.H, T = kStateSteps, B = kStateLanes;
  struct Lane {
    int64_t user = -1, pos = 0, end = 0;
  };
  std::vector<Lane> lanes(B);
  std::vector<int64_t> finishes(static_cast<size_t>(T) * B);  // the user whose last event (t, b) is
  std::vector<float> carry(2 * static_cast<size_t>(B) * H, 0.f);
  std::vector<const float*> lu(B), lh(B);
  for (int b = 0; b < B; ++b) lu[b] = lh[b] = carry.data();
  for (;;) {
    bool any = false;
    for (int t = 0; t < T; ++t)
      for (int b = 0; b < B; ++b) {
        const int64_t i = static_cast<int64_t>(t) * B + b;
        Lane& L = lanes[b];
        uint8_t flags = 0;
        finishes[i] = -1;
        if (L.user < 0 || L.pos >= L.end) {
          const size_t k = next.fetch_add(1);
          if (k >= users.size()) {
            L.user = -1;
            w.items[i] = -1;
            continue;
          }
          const int64_t u = users[k];
          L = {u, ev.offsets[u], ev.offsets[u + 1]};
          flags = kFresh;
        }
        const int64_t p = L.pos++;
        w.items[i] = ev.items[p];
        w.flags[i] = flags | (ev.new_session[p] ? kNewSession : 0);
        w.gaps[i] = flags & kFresh ? 0.f : static_cast<float>(ev.timestamps[p] - ev.timestamps[p - 1]);
        if (L.pos == L.end) finishes[i] = L.user;
        any = true;
      }
    if (!any) return;
    lb.start(P, W, w);
    for (int t = 0; t < T; ++t) {
      lb.forward(P, W, w, t, lu.data(), lh.data());
      for (int b = 0; b < B; ++b) {
        const int64_t u = finishes[static_cast<int64_t>(t) * B + b];
        if (u < 0) continue;
        std::memcpy(U + u * H, lu[b], sizeof(float) * H);
        std::memcpy(Hs + u * H, lh[b], sizeof(float) * H);
      }
    }
    for (int b = 0; b < B; ++b) {  // the lanes' states, kept over the next window's buffers
      float* cu = carry.data() + static_cast<int64_t>(b) * 2 * H;
      std::memmove(cu, lu[b], sizeof(float) * H);
      std::memmove(cu + H, lh[b], sizeof(float) * H);
      lu[b] = cu;
      lh[b] = cu + H;
    }
  }
}

}  // namespace

void compute_states(const Params& P, const EventArrays& ev, float* U, float* Hs, int num_threads) {
  const int H = P.H;
  // An unknown item enters the step as a zero input vector (the block engine would skip it instead):
  // those users take the one-at-a-time path, all others run in blocks of lanes.
  std::vector<int64_t> batched, single;
  for (int64_t user = 0; user < ev.n_users; ++user) {
    const int64_t a = ev.offsets[user], b = ev.offsets[user + 1];
    std::copy(P.d.u0.begin(), P.d.u0.end(), U + user * H);
    std::fill(Hs + user * H, Hs + (user + 1) * H, 0.f);
    if (a == b) continue;
    (std::find(ev.items + a, ev.items + b, -1) == ev.items + b ? batched : single).push_back(user);
  }
  parallel_for(static_cast<int64_t>(single.size()), num_threads, [&](int64_t k) {
    const int64_t user = single[k], a = ev.offsets[user], b = ev.offsets[user + 1];
    thread_local std::vector<float> gaps;
    gaps.resize(b - a);
    for (int64_t i = a; i < b; ++i)
      gaps[i - a] = i > a ? static_cast<float>(ev.timestamps[i] - ev.timestamps[i - 1]) : 0.f;
    advance(P, U + user * H, Hs + user * H, true, ev.items + a, gaps.data(), ev.new_session + a, b - a);
  }, 16);
  if (batched.empty()) return;
  const int64_t lanes_needed = (static_cast<int64_t>(batched.size()) + kStateLanes - 1) / kStateLanes;
  const int nt = static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), lanes_needed));
  PackedWeights W;
  W.pack(P.d, H);
  std::vector<LaneBlock> blocks(nt);
  std::vector<Window> windows(nt);
  for (int p = 0; p < nt; ++p) {
    blocks[p].allocate(kStateSteps, 0, kStateLanes, H);
    windows[p].resize(kStateSteps, kStateLanes, 0, H);
  }
  std::atomic<size_t> next{0};
  parallel_team(nt, [&](int th, int team) {
    for (int p = th; p < nt; p += team) states_in_lanes(P, W, ev, batched, next, blocks[p], windows[p], U, Hs);
  });
}

}  // namespace hrnn
