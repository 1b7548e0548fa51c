#include "hrnn/neighbors.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "hrnn/errors.h"

namespace hrnn {
namespace {

bool csr_ok(const std::vector<int64_t>& ptr, size_t n_values) {
  if (ptr.empty() || ptr.front() != 0 || static_cast<size_t>(ptr.back()) != n_values) return false;
  return std::is_sorted(ptr.begin(), ptr.end());
}

}  // namespace

void NeighborIndex::validate(int64_t n_items) const {
  require(std::isfinite(beta) && beta >= 0.f && beta < 1.f, "session_start_neighbors must be in [0, 1)");
  require(k >= 1 && sample_size >= 1, "neighbour k and sample_size must be >= 1");
  const int64_t n_sessions = static_cast<int64_t>(session_offsets.size()) - 1;
  require(csr_ok(session_offsets, session_items.size()), "neighbors: session_offsets is not a CSR of session_items");
  require(static_cast<int64_t>(item_offsets.size()) == n_items + 1 && csr_ok(item_offsets, item_sessions.size()),
          "neighbors: item_offsets is not a CSR of item_sessions over the catalogue");
  require(item_sessions.size() == session_items.size(), "neighbors: item_sessions and session_items differ in size");
  require(static_cast<int64_t>(recency.size()) == n_sessions, "neighbors: one recency per session is needed");
  require(own_session.size() == fit_events.size(), "neighbors: own_session and fit_events differ in size");
  for (int32_t i : session_items) require(i >= 0 && i < n_items, "neighbors: session item out of range");
  for (int64_t s : item_sessions)  // (an empty one would make a 0 / 0 similarity)
    require(s >= 0 && s < n_sessions && session_offsets[s + 1] > session_offsets[s],
            "neighbors: item session out of range or empty");
  for (int64_t s : own_session) require(s >= -1 && s < n_sessions, "neighbors: own session out of range");
  for (int64_t n : fit_events) require(n >= 0, "neighbors: negative event count");
}

int64_t NeighborIndex::own(int64_t user, int64_t session_begin) const {
  if (user < 0 || user >= static_cast<int64_t>(own_session.size())) return -1;
  return session_begin < fit_events[user] ? own_session[user] : -1;
}

SparseItems NeighborIndex::votes(const int32_t* items, int64_t n, int64_t own_s, const ItemSet* drop) const {
  // The session's distinct known items, each weighted by its latest position (the i-th of n: i / n).
  // (In double, as SessionKNN's: sessions whose overlaps are equal sums of different weights tie
  // exactly, and the more recent one goes first, where float sums would order them by rounding.)
  std::vector<std::pair<int32_t, double>> cur;
  for (int64_t i = 0; i < n; ++i)
    if (items[i] >= 0) cur.push_back({items[i], static_cast<double>(i + 1) / static_cast<double>(n)});
  std::stable_sort(cur.begin(), cur.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  size_t m = 0;
  for (size_t i = 0; i < cur.size(); ++i) {
    if (m > 0 && cur[m - 1].first == cur[i].first)
      cur[m - 1].second = cur[i].second;  // later positions come later in a stable sort
    else
      cur[m++] = cur[i];
  }
  cur.resize(m);
  if (cur.empty()) return {};
  const int64_t n_cur = static_cast<int64_t>(cur.size());
  const int64_t cap = std::max<int64_t>(1, sample_size / n_cur);
  std::vector<int64_t> cand;
  for (const auto& [item, w] : cur) {
    const int64_t a = item_offsets[item], b = std::min(item_offsets[item + 1], a + cap);
    for (int64_t j = a; j < b; ++j)
      if (item_sessions[j] != own_s) cand.push_back(item_sessions[j]);
  }
  std::sort(cand.begin(), cand.end());
  cand.erase(std::unique(cand.begin(), cand.end()), cand.end());
  struct Near {
    double sim;
    int64_t session;
  };
  std::vector<Near> near;
  near.reserve(cand.size());
  for (int64_t s : cand) {
    double overlap = 0.0;
    for (int64_t j = session_offsets[s]; j < session_offsets[s + 1]; ++j) {
      const auto it = std::lower_bound(cur.begin(), cur.end(), session_items[j],
                                       [](const auto& e, int32_t i) { return e.first < i; });
      if (it != cur.end() && it->first == session_items[j]) overlap += it->second;
    }
    const double len = static_cast<double>(session_offsets[s + 1] - session_offsets[s]);
    near.push_back({overlap / std::sqrt(static_cast<double>(n_cur) * len), s});
  }
  // The k most similar (ties: the more recent session).
  auto better = [&](const Near& a, const Near& b) {
    return a.sim != b.sim ? a.sim > b.sim : recency[a.session] > recency[b.session];
  };
  const size_t top = std::min<size_t>(near.size(), static_cast<size_t>(k));
  std::partial_sort(near.begin(), near.begin() + top, near.end(), better);
  std::vector<std::pair<int32_t, double>> raw;
  for (size_t t = 0; t < top; ++t)
    for (int64_t j = session_offsets[near[t].session]; j < session_offsets[near[t].session + 1]; ++j)
      if (!drop || !std::binary_search(drop->begin(), drop->end(), session_items[j]))
        raw.push_back({session_items[j], near[t].sim});
  std::sort(raw.begin(), raw.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  SparseItems out;
  double total = 0.0;
  for (size_t i = 0; i < raw.size();) {
    double sum = 0.0;
    size_t j = i;
    for (; j < raw.size() && raw[j].first == raw[i].first; ++j) sum += raw[j].second;
    if (sum > 0.0) {
      out.push_back({raw[i].first, static_cast<float>(sum)});
      total += sum;
    }
    i = j;
  }
  for (auto& e : out) e.second = static_cast<float>(e.second / total);
  return out;
}

double top_log_sum_exp(const float* scores, int64_t n) {
  if (n <= 0) return -HUGE_VAL;
  std::vector<float> top(scores, scores + n);
  if (n > kNormItems) std::nth_element(top.begin(), top.begin() + (kNormItems - 1), top.end(), std::greater<float>());
  top.resize(std::min<int64_t>(n, kNormItems));
  const float best = *std::max_element(top.begin(), top.end());
  double z = 0.0;
  for (float x : top) z += std::exp(static_cast<double>(x) - best);
  return best + std::log(z);
}

}  // namespace hrnn
