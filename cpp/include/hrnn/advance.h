// Forward-only state advance: the same step as training, for real-time events and for the states of
// every user after training.
#pragma once
#include <cstdint>
#include <vector>

#include "hrnn/events.h"
#include "hrnn/params.h"

namespace hrnn {

// Advances (u, h) over n events. fresh: the first event is the user's first (the state is reset to
// the learned initial one). gaps[i]: seconds since the previous event (ignored when fresh);
// new_session[i]: whether event i starts a session. An item of -1 (unknown to the model) enters the
// step as a zero input vector: it still moves the clock and the session logic.
void advance(const Params& P, float* u, float* h, bool fresh, const int32_t* items, const float* gaps,
             const uint8_t* new_session, int64_t n);

// States of all users after their whole history: U[u*H..], Hs[u*H..]. Users without events get the
// learned initial user state and a zero session state.
void compute_states(const Params& P, const EventArrays& ev, float* U, float* Hs, int num_threads);

}  // namespace hrnn
