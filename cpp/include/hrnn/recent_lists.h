// The recent lists of a training window (docs/engine.md, "Repeat score"): for each (t, b), the
// occurrences of its target among the lane's last kRepeatWindow events, and (negatives) the other
// items there as extra candidate columns with their occurrences.
#pragma once
#include <cstdint>
#include <vector>

#include "hrnn/window.h"

namespace hrnn {

class RecentLists {
 public:
  // Fills w's rep_* and ext_* arrays for its T x B steps. Step i = t * B + b is at event pos[i] of
  // a user whose events start at start[i] (pos[i] = -1: no target; else start[i] <= pos[i] and
  // items[pos[i] + 1] is the target); items (-1 = unknown) and timestamps are the whole log's.
  // Without `repeat` every list is empty.
  void build(const int32_t* items, const double* timestamps, const int64_t* start, const int64_t* pos,
             bool repeat, bool negatives, int num_threads, Window& w);

 private:
  // One lane's lists before they go into w: step t's entries are [*_start[t], *_start[t + 1]).
  struct Lane {
    std::vector<int32_t> rep_start, ext_start, occ_start;  // [T + 1]
    std::vector<uint8_t> rep_pos, rep_age, ext_pos, ext_age;
    std::vector<int32_t> ext_items, ext_occ_end;  // ext_occ_end[e]: end of item e's occurrences
    std::vector<uint64_t> keys;  // item << 32 | event - the run's first event
    void build(const int32_t* items, const double* timestamps, const int64_t* start, const int64_t* pos,
               int T, int B, int b, bool repeat, bool negatives);
  };
  std::vector<Lane> lanes_;
  std::vector<int64_t> occ_base_;  // [T*B + 1]: where each step's occurrences start in w
};

}  // namespace hrnn
