// Events sorted by user, then time: what training and state computation read.
#pragma once
#include <cstdint>

namespace hrnn {

struct EventArrays {
  int64_t n_users = 0, n_events = 0;
  const int64_t* offsets = nullptr;     // [n_users + 1]; user u's events are offsets[u] .. offsets[u+1]
  const int32_t* items = nullptr;       // [n_events]; -1 = an item the model does not know
  const double* timestamps = nullptr;   // [n_events] seconds, non-decreasing within a user
  const uint8_t* new_session = nullptr; // [n_events] 1 at each session's first event

  // Throws std::invalid_argument naming the first problem (offsets, item range, time order).
  void validate(int64_t n_items) const;
};

}  // namespace hrnn
