// One step of one lane (docs/engine.md, "One step of one lane"): the forward pass that training,
// real-time events and inference share, and its exact backward pass.
#pragma once
#include <cmath>
#include <cstdint>

#include "hrnn/params.h"

namespace hrnn {

enum StepFlags : uint8_t { kFresh = 1, kNewSession = 2 };

// What the backward pass needs of one step, as offsets into a float buffer of cache_floats(H).
struct StepCache {
  static int floats(int H) { return 15 * H; }
  // Layout: u_prev, h_prev, ur, uz, un, uhr, u, s, g, htil, sr, sz, sn, shr, h
  enum Slot { UPrev, HPrev, UR, UZ, UN, UHR, U, S, G, HTil, SR, SZ, SN, SHR, Hout, kSlots };
};

// Time features of a gap in seconds.
inline void time_features(float gap, bool new_session, float* phi);

// Forward. x: the item's input vector (zeros for an unknown item). u_prev/h_prev: the state entering
// the step (ignored when fresh). cache: StepCache::floats(H) floats; its U and Hout slots hold the
// state leaving the step.
void step_forward(const Params& P, const float* x, float gap, uint8_t flags, const float* u_prev,
                  const float* h_prev, float* cache);

// Per-thread scratch for the backward pass.
struct StepScratch {
  float* buf;  // 8 * H floats
};

// Backward. dh: gradient w.r.t. the step's output h (loss + what flows back from later steps);
// du: gradient w.r.t. the step's output u. On return dh/du hold the gradients w.r.t. h_prev/u_prev
// (zero when fresh), dx the gradient w.r.t. x (overwritten), and g (a Dense) has the parameter
// gradients accumulated.
void step_backward(const Params& P, const float* x, float gap, uint8_t flags, const float* cache,
                   float* dh, float* du, float* dx, Dense& g, float* scratch);

inline void time_features(float gap, bool new_session, float* phi) {
  phi[0] = std::log1p((gap > 0.f ? gap : 0.f) / 60.f);
  phi[1] = new_session ? 1.f : 0.f;
}

}  // namespace hrnn
