// The repeat score (docs/engine.md, "Repeat score"): recent items of a user get a learned boost by
// how many events ago and how long ago they were seen.
#pragma once
#include <cstdint>
#include <vector>

#include "hrnn/params.h"

namespace hrnn {

constexpr int kRepeatWindow = 200;  // L: the recent events that can be repeated

inline uint8_t pos_bucket(int64_t events_ago) {
  if (events_ago < 4) return static_cast<uint8_t>(events_ago < 0 ? 0 : events_ago);
  if (events_ago < 8) return 4;
  if (events_ago < 16) return 5;
  if (events_ago < 32) return 6;
  return 7;
}

inline uint8_t age_bucket(double seconds) {
  static constexpr double kEdges[] = {1, 5, 30, 180, 1440, 4320, 10080};  // minutes
  const double minutes = seconds / 60.0;
  uint8_t b = 0;
  for (double e : kEdges) b += minutes >= e;
  return b;
}

// hv[j] = h . rV[:, j] for the kRepeatCols columns: computed once per state, it makes each
// occurrence's term O(1).
void repeat_projection(const Params& P, const float* h, float* hv);

// f for one occurrence: rc[pos] + rd[age] + h . (rV[:, pos] + rV[:, 8 + age]), given hv.
inline float repeat_term(const Params& P, const float* hv, uint8_t pos, uint8_t age) {
  return P.d.rc[pos] + P.d.rd[age] + hv[pos] + hv[kPosBuckets + age];
}

// The boost of each distinct recent item, for a state h after a user's recent events (items[i],
// ts[i], oldest first, the last one is the current event). Returns (item, boost) sorted by item;
// unknown items (-1) are skipped.
std::vector<std::pair<int32_t, float>> repeat_boosts(const Params& P, const float* h, const int32_t* items,
                                                     const double* ts, int64_t n);

}  // namespace hrnn
