// One step of one lane (docs/engine.md, "One step of one lane"): the forward pass of real-time events
// and of histories with unknown items (training runs the same step batched over lanes: lane_block.h).
#pragma once
#include <cmath>
#include <cstdint>

#include "hrnn/params.h"

namespace hrnn {

enum StepFlags : uint8_t { kFresh = 1, kNewSession = 2 };

// A step's intermediate values, as offsets into a float buffer of StepCache::floats(H).
struct StepCache {
  static int floats(int H) { return 15 * H; }
  // Layout: u_prev, h_prev, ur, uz, un, uhr, u, s, g, htil, sr, sz, sn, shr, h
  enum Slot { UPrev, HPrev, UR, UZ, UN, UHR, U, S, G, HTil, SR, SZ, SN, SHR, Hout, kSlots };
};

// Forward. x: the item's input vector (zeros for an unknown item). u_prev/h_prev: the state entering
// the step (ignored when fresh). cache: StepCache::floats(H) floats; its U and Hout slots hold the
// state leaving the step.
void step_forward(const Params& P, const float* x, float gap, uint8_t flags, const float* u_prev,
                  const float* h_prev, float* cache);

// The state a query that starts a new session scores items with (docs/engine.md, "Session-start
// queries"): out = (1 - mix) h + mix tanh(W0 GRU_u(h, u) + b0), the state after the user's last
// event mixed with the session state its user state proposes once it has absorbed the session that
// h ends. out may be h.
void session_start_state(const Params& P, float mix, const float* u, const float* h, float* out);
// std::invalid_argument unless 0 <= mix <= 1.
void check_session_start_mix(float mix);

// Time features of a gap in seconds.
inline void time_features(float gap, bool new_session, float* phi) {
  phi[0] = std::log1p((gap > 0.f ? gap : 0.f) / 60.f);
  phi[1] = new_session ? 1.f : 0.f;
}

}  // namespace hrnn
