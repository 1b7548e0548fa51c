#include "hrnn/recent_lists.h"

#include <algorithm>
#include <climits>

#include "hrnn/errors.h"
#include "hrnn/parallel.h"
#include "hrnn/repeat.h"

namespace hrnn {

// For each step of lane b, the last kRepeatWindow events up to its event p: the target's
// occurrences, and (negatives) the other items as extra candidate columns with their occurrences
// (docs/engine.md, "Repeat score"), by item and each item's occurrences oldest first. A lane moves
// one event per step, so the events of a run of steps on one user are sorted by item once for the
// whole run, and each step takes the ones in its range.
void RecentLists::Lane::build(const int32_t* items, const double* timestamps, const int64_t* start,
                              const int64_t* pos, int T, int B, int b, bool repeat, bool negatives) {
  for (auto* v : {&rep_start, &ext_start, &occ_start}) v->assign(T + 1, 0);
  for (auto* v : {&rep_pos, &rep_age, &ext_pos, &ext_age}) v->clear();
  ext_items.clear();
  ext_occ_end.clear();
  auto at = [&](int t) { return static_cast<int64_t>(t) * B + b; };
  auto end_step = [&](int t) {
    rep_start[t + 1] = static_cast<int32_t>(rep_pos.size());
    ext_start[t + 1] = static_cast<int32_t>(ext_items.size());
    occ_start[t + 1] = static_cast<int32_t>(ext_pos.size());
  };
  for (int t = 0; t < T;) {
    if (!repeat || pos[at(t)] < 0) {
      end_step(t++);
      continue;
    }
    const int64_t s0 = start[at(t)];
    int t_end = t + 1;
    while (t_end < T && pos[at(t_end)] == pos[at(t_end - 1)] + 1 && start[at(t_end)] == s0) ++t_end;
    const int64_t e0 = std::max(s0, pos[at(t)] - kRepeatWindow + 1), e1 = pos[at(t_end - 1)];
    keys.clear();
    for (int64_t j = e0; j <= e1; ++j)
      if (items[j] >= 0) keys.push_back(static_cast<uint64_t>(items[j]) << 32 | static_cast<uint64_t>(j - e0));
    std::sort(keys.begin(), keys.end());
    for (; t < t_end; ++t) {
      const int64_t p = pos[at(t)], lo = std::max(s0, p - kRepeatWindow + 1);
      const int32_t y = items[p + 1];
      int32_t prev = -1;
      for (const uint64_t key : keys) {
        const int64_t j = e0 + static_cast<int64_t>(key & 0xFFFFFFFFu);
        if (j < lo || j > p) continue;
        const int32_t it = static_cast<int32_t>(key >> 32);
        if (it != y && !negatives) continue;
        const uint8_t pb = pos_bucket(p - j), ab = age_bucket(timestamps[p] - timestamps[j]);
        if (it == y) {
          rep_pos.push_back(pb);
          rep_age.push_back(ab);
          continue;
        }
        if (it != prev) {
          if (prev >= 0) ext_occ_end.push_back(static_cast<int32_t>(ext_pos.size()));
          ext_items.push_back(it);
          prev = it;
        }
        ext_pos.push_back(pb);
        ext_age.push_back(ab);
      }
      if (prev >= 0) ext_occ_end.push_back(static_cast<int32_t>(ext_pos.size()));
      end_step(t);
    }
  }
}

void RecentLists::build(const int32_t* items, const double* timestamps, const int64_t* start,
                        const int64_t* pos, bool repeat, bool negatives, int num_threads, Window& w) {
  const int T = w.T, B = w.B;
  const int64_t TB = static_cast<int64_t>(T) * B;
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(num_threads), B)));
  if (lanes_.size() != static_cast<size_t>(B)) lanes_.resize(B);
  auto lanes = [&](int64_t k) { return std::make_pair(static_cast<int>(B * k / nt), static_cast<int>(B * (k + 1) / nt)); };
  parallel_for(nt, num_threads, [&](int64_t k) {
    const auto [b0, b1] = lanes(k);
    for (int b = b0; b < b1; ++b) lanes_[b].build(items, timestamps, start, pos, T, B, b, repeat, negatives);
  });
  // Where each (t, b)'s entries go in w, in (t, b) order.
  occ_base_.assign(TB + 1, 0);
  int64_t n_rep = 0, n_ext = 0;
  for (int64_t i = 0; i < TB; ++i) {
    const Lane& l = lanes_[i % B];
    const int t = static_cast<int>(i / B);
    n_rep += l.rep_start[t + 1] - l.rep_start[t];
    n_ext += l.ext_start[t + 1] - l.ext_start[t];
    occ_base_[i + 1] = occ_base_[i] + (l.occ_start[t + 1] - l.occ_start[t]);
    require(n_rep < INT32_MAX && n_ext < INT32_MAX && occ_base_[i + 1] < INT32_MAX,
            "a training window's recent lists exceed 2^31 entries");
    w.rep_offsets[i + 1] = static_cast<int32_t>(n_rep);
    w.ext_offsets[i + 1] = static_cast<int32_t>(n_ext);
  }
  const int64_t n_occ = occ_base_[TB];
  w.rep_pos.resize(n_rep);
  w.rep_age.resize(n_rep);
  w.ext_items.resize(n_ext);
  w.ext_occ_offsets.resize(n_ext + 1);
  w.ext_occ_offsets[0] = 0;
  w.ext_pos.resize(n_occ);
  w.ext_age.resize(n_occ);
  parallel_for(nt, num_threads, [&](int64_t k) {
    const auto [b0, b1] = lanes(k);
    for (int b = b0; b < b1; ++b) {
      const Lane& l = lanes_[b];
      for (int t = 0; t < T; ++t) {
        const int64_t i = static_cast<int64_t>(t) * B + b;
        const int32_t r0 = l.rep_start[t], r1 = l.rep_start[t + 1];
        std::copy(l.rep_pos.begin() + r0, l.rep_pos.begin() + r1, w.rep_pos.begin() + w.rep_offsets[i]);
        std::copy(l.rep_age.begin() + r0, l.rep_age.begin() + r1, w.rep_age.begin() + w.rep_offsets[i]);
        const int32_t x0 = l.ext_start[t], x1 = l.ext_start[t + 1], o0 = l.occ_start[t], o1 = l.occ_start[t + 1];
        std::copy(l.ext_items.begin() + x0, l.ext_items.begin() + x1, w.ext_items.begin() + w.ext_offsets[i]);
        for (int32_t e = x0; e < x1; ++e)
          w.ext_occ_offsets[w.ext_offsets[i] + (e - x0) + 1] = static_cast<int32_t>(occ_base_[i] + (l.ext_occ_end[e] - o0));
        std::copy(l.ext_pos.begin() + o0, l.ext_pos.begin() + o1, w.ext_pos.begin() + occ_base_[i]);
        std::copy(l.ext_age.begin() + o0, l.ext_age.begin() + o1, w.ext_age.begin() + occ_base_[i]);
      }
    }
  });
}

}  // namespace hrnn
