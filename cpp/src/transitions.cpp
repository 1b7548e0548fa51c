#include "hrnn/transitions.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "hrnn/errors.h"
#include "hrnn/repeat.h"

namespace hrnn {

namespace {
// Sorts s, made of sorted runs [runs[r], runs[r + 1]), by merging them pairwise (stable: equal keys
// keep their runs' order, so each item's entries are summed in a fixed order).
template <class T, class Less>
void merge_runs(std::vector<T>& s, std::vector<size_t> runs, Less less) {
  if (runs.size() <= 2) return;  // one run: sorted already
  std::vector<T> out(s.size());
  while (runs.size() > 2) {
    std::vector<size_t> merged{0};
    size_t r = 0;
    for (; r + 2 < runs.size(); r += 2) {
      std::merge(s.begin() + runs[r], s.begin() + runs[r + 1], s.begin() + runs[r + 1], s.begin() + runs[r + 2],
                 out.begin() + runs[r], less);
      merged.push_back(runs[r + 2]);
    }
    if (r + 1 < runs.size()) {  // an odd run out: carried over as it is
      std::copy(s.begin() + runs[r], s.begin() + runs[r + 1], out.begin() + runs[r]);
      merged.push_back(runs[r + 1]);
    }
    s.swap(out);
    runs.swap(merged);
  }
}
}  // namespace

void Transitions::set(int64_t n_items, float weight, std::vector<int64_t> offsets, std::vector<int32_t> successors,
                      std::vector<float> counts, std::vector<float> out, const double* popularity,
                      std::vector<float> repeat_curve) {
  require(std::isfinite(weight) && weight >= 0.f, "transition weight must be a finite number >= 0");
  require(repeat_curve.size() <= static_cast<size_t>(kRepeatWindow),
          "the repeat curve has at most " + std::to_string(kRepeatWindow) + " entries");
  for (float q : repeat_curve) require(q >= 0.f && q <= 1.f, "repeat curve entries must be in [0, 1]");
  require(static_cast<int64_t>(offsets.size()) == n_items + 1 && offsets[0] == 0 &&
              offsets[n_items] == static_cast<int64_t>(successors.size()) && counts.size() == successors.size() &&
              static_cast<int64_t>(out.size()) == n_items,
          "transition table sizes do not match the catalogue");
  for (int64_t i = 0; i < n_items; ++i) {
    require(offsets[i] <= offsets[i + 1], "transition offsets must be non-decreasing (item " + std::to_string(i) + ")");
    double kept = 0.0;
    for (int64_t e = offsets[i]; e < offsets[i + 1]; ++e) {
      require(successors[e] >= 0 && successors[e] < n_items,
              "transition successor out of range: " + std::to_string(successors[e]));
      require(std::isfinite(counts[e]) && counts[e] > 0.f, "transition counts must be finite and > 0");
      kept += counts[e];
    }
    require(std::isfinite(out[i]) && out[i] >= kept * (1.0 - 1e-6),
            "transitions out of item " + std::to_string(i) + " must be finite and >= its kept counts");
  }
  double total = 0.0;
  for (int64_t i = 0; i < n_items; ++i) {
    require(std::isfinite(popularity[i]) && popularity[i] >= 0.0, "popularity must be finite and >= 0");
    total += popularity[i];
  }
  require(total > 0.0, "popularity must have a positive sum");
  std::vector<float> pop(n_items);
  std::vector<double> log_pop(n_items);
  for (int64_t i = 0; i < n_items; ++i) {
    const double share = std::max(popularity[i] / total, 1e-12);  // log(0) would rule an item out for good
    pop[i] = static_cast<float>(share);
    log_pop[i] = std::log(share);
  }
  // Each item's successors in item order: a query then merges sorted runs instead of sorting them all.
  std::vector<std::pair<int32_t, float>> row;
  for (int64_t i = 0; i < n_items; ++i) {
    if (std::is_sorted(successors.begin() + offsets[i], successors.begin() + offsets[i + 1])) continue;
    row.clear();
    for (int64_t e = offsets[i]; e < offsets[i + 1]; ++e) row.emplace_back(successors[e], counts[e]);
    std::sort(row.begin(), row.end());
    for (size_t r = 0; r < row.size(); ++r) {
      successors[offsets[i] + static_cast<int64_t>(r)] = row[r].first;
      counts[offsets[i] + static_cast<int64_t>(r)] = row[r].second;
    }
  }
  weight_ = weight;
  offsets_ = std::move(offsets);
  successors_ = std::move(successors);
  counts_ = std::move(counts);
  out_ = std::move(out);
  has_repeats_ = std::any_of(repeat_curve.begin(), repeat_curve.end(), [](float q) { return q > 0.f; });
  repeat_curve_ = std::move(repeat_curve);
  pop_ = std::move(pop);
  log_pop_ = std::move(log_pop);
}

std::vector<float> Transitions::item_bias(const std::vector<float>& bo, float w) const {
  std::vector<float> bias(bo);
  if (has_table() && w > 0.f)
    for (size_t i = 0; i < bias.size(); ++i) bias[i] += static_cast<float>(w * log_pop_[i]);
  return bias;
}

int64_t Transitions::history() const {
  return active() ? std::max<int64_t>(kTransitionSources, static_cast<int64_t>(repeat_curve_.size())) : 0;
}

std::vector<std::pair<int32_t, double>> Transitions::sparse_terms(const int32_t* items, int64_t n,
                                                                 const ItemSet* seen, bool sources) const {
  if (!has_table()) return {};
  require(seen != nullptr || !rules_out_seen(), "sparse_terms: the prior rules out seen items and needs them");
  // Source weights a_k = decay^k / (their sum over the known sources); G = sum_k a_k s / (out_k + s).
  double a[kTransitionSources], sum_a = 0.0, g = 0.0;
  int32_t src[kTransitionSources];
  int m = 0;
  double decay_k = 1.0;
  for (int64_t k = 0; sources && k < kTransitionSources && k < n; ++k, decay_k *= kTransitionDecay) {
    const int32_t i = items[n - 1 - k];
    if (i < 0) continue;
    src[m] = i;
    a[m++] = decay_k;
    sum_a += decay_k;
  }
  // (item, a_k c / (out_k + s) of a successor, or q[p] / (1 - r) of a recent item) before merging,
  // in runs sorted by item: one per source, and the recent items'.
  std::vector<std::pair<int32_t, double>> s;
  int64_t n_entries = std::min<int64_t>(n, static_cast<int64_t>(repeat_curve_.size()));
  for (int q = 0; q < m; ++q) n_entries += offsets_[src[q] + 1] - offsets_[src[q]];
  s.reserve(static_cast<size_t>(n_entries));
  std::vector<size_t> runs{0};
  for (int q = 0; q < m; ++q) {
    const double denom = static_cast<double>(out_[src[q]]) + kTransitionSmoothing;
    const double aq = a[q] / sum_a;
    g += aq * kTransitionSmoothing / denom;
    for (int64_t e = offsets_[src[q]]; e < offsets_[src[q] + 1]; ++e)
      s.emplace_back(successors_[e], aq * counts_[e] / denom);
    runs.push_back(s.size());
  }
  if (m == 0) g = 1.0;  // no known source: the transition part is the popularity alone
  // The repeat part: R_j = the sum of q[p] over j's positions p among the last events (0 = the
  // latest), and r = the total, at most 0.95, the chance of a repeat.
  const int64_t L = std::min<int64_t>(n, static_cast<int64_t>(repeat_curve_.size()));
  const size_t first_repeat = s.size();
  double repeat_total = 0.0;
  for (int64_t p = 0; p < L; ++p) {
    const int32_t i = items[n - 1 - p];
    if (i < 0 || !(repeat_curve_[p] > 0.f)) continue;
    s.emplace_back(i, repeat_curve_[p]);
    repeat_total += repeat_curve_[p];
  }
  const double keep_new = 1.0 - std::min(repeat_total, 0.95);
  for (size_t e = first_repeat; e < s.size(); ++e) s[e].second /= keep_new;
  const auto by_item = [](const auto& x, const auto& y) { return x.first < y.first; };
  std::stable_sort(s.begin() + static_cast<std::ptrdiff_t>(first_repeat), s.end(), by_item);
  runs.push_back(s.size());
  merge_runs(s, runs, by_item);
  size_t n_terms = 0;  // each item's entries are summed into one, in place
  for (size_t r = 0; r < s.size();) {
    const int32_t j = s[r].first;
    double v = 0.0;
    for (; r < s.size() && s[r].first == j; ++r) v += s[r].second;
    s[n_terms++] = {j, std::log1p(v / (g * pop_[j]))};
  }
  s.resize(n_terms);
  if (!rules_out_seen()) return s;
  // A log without repeats (q = 0, so no repeat entries above): an item of the history is not new
  // either, and its term is the floor's, whatever its transition evidence.
  const double floor_term = std::log(kSeenFloor);
  std::vector<std::pair<int32_t, double>> terms;
  terms.reserve(s.size() + seen->size());
  size_t e = 0;
  for (int32_t j : *seen) {
    for (; e < s.size() && s[e].first < j; ++e) terms.push_back(s[e]);
    if (e < s.size() && s[e].first == j) ++e;
    terms.emplace_back(j, floor_term);
  }
  terms.insert(terms.end(), s.begin() + static_cast<std::ptrdiff_t>(e), s.end());
  return terms;
}

void Transitions::add_boosts(const int32_t* items, int64_t n, const ItemSet* seen,
                             std::vector<std::pair<int32_t, float>>& boosts, bool sources) const {
  if (!active()) return;
  const auto terms = sparse_terms(items, n, seen, sources);
  if (terms.empty()) return;
  std::vector<std::pair<int32_t, float>> merged;
  merged.reserve(boosts.size() + terms.size());
  size_t b = 0;
  for (const auto& [j, t] : terms) {
    const float term = static_cast<float>(weight_ * t);
    for (; b < boosts.size() && boosts[b].first < j; ++b) merged.push_back(boosts[b]);
    if (b < boosts.size() && boosts[b].first == j) merged.emplace_back(j, boosts[b++].second + term);
    else merged.emplace_back(j, term);
  }
  merged.insert(merged.end(), boosts.begin() + static_cast<std::ptrdiff_t>(b), boosts.end());
  boosts = std::move(merged);
}

}  // namespace hrnn
