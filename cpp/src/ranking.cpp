#include "hrnn/ranking.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "hrnn/advance.h"
#include "hrnn/errors.h"
#include "hrnn/item_set.h"
#include "hrnn/kernels.h"
#include "hrnn/parallel.h"
#include "hrnn/repeat.h"
#include "hrnn/scoring.h"
#include "hrnn/step.h"

namespace hrnn {

namespace {

// A recent or successor item of a query: its learned repeat boost and its prior term at weight 1.
struct SparseScore {
  int32_t item;
  float repeat;
  double prior;
};

// The union of the repeat boosts and the prior terms, both sorted by item.
void merge_sparse(const std::vector<std::pair<int32_t, float>>& rb, const std::vector<std::pair<int32_t, double>>& terms,
                  std::vector<SparseScore>& out) {
  out.clear();
  size_t a = 0, b = 0;
  while (a < rb.size() || b < terms.size()) {
    if (b == terms.size() || (a < rb.size() && rb[a].first < terms[b].first)) {
      out.push_back({rb[a].first, rb[a].second, 0.0});
      ++a;
    } else if (a == rb.size() || terms[b].first < rb[a].first) {
      out.push_back({terms[b].first, 0.f, terms[b].second});
      ++b;
    } else {
      out.push_back({rb[a].first, rb[a].second, terms[b].second});
      ++a;
      ++b;
    }
  }
}

// (u, h) after a user's prefix events [a, b), from the learned initial state.
void advance_prefix(const Params& P, const EventArrays& prefix, int64_t a, int64_t b, std::vector<float>& u,
                    std::vector<float>& h) {
  u = P.d.u0;
  h.assign(P.H, 0.f);
  std::vector<float> gaps;
  gaps.reserve(b - a);
  for (int64_t i = a; i < b; ++i)
    gaps.push_back(i > a ? static_cast<float>(prefix.timestamps[i] - prefix.timestamps[i - 1]) : 0.f);
  advance(P, u.data(), h.data(), true, prefix.items + a, gaps.data(), prefix.new_session + a, b - a);
}

}  // namespace

void next_item_ranks(const Params& P, const Transitions& tr, const EventArrays& prefix, const EventArrays& test,
                     const std::vector<float>& weights, int32_t* ranks, int num_threads) {
  prefix.validate(P.n_items);
  test.validate(P.n_items);
  require(prefix.n_users == test.n_users, "prefix and test must have the same users");
  require(!weights.empty(), "next_item_ranks needs at least one prior weight");
  for (float w : weights) require(std::isfinite(w) && w >= 0.f, "prior weights must be finite numbers >= 0");
  const int H = P.H;
  const int K = static_cast<int>(weights.size());
  const int64_t n_test = test.n_events;
  const float* O = P.out_rows();
  std::vector<std::vector<float>> bias(K);
  for (int k = 0; k < K; ++k) bias[k] = tr.item_bias(P.bo, weights[k]);
  parallel_for(test.n_users, num_threads, [&](int64_t user) {
    const int64_t a = prefix.offsets[user], b = prefix.offsets[user + 1];
    const int64_t ta = test.offsets[user], tb = test.offsets[user + 1];
    if (ta == tb) return;
    if (b == a) invalid("next_item_ranks: user " + std::to_string(user) + " has test events but no history");
    std::vector<float> u, h, sy(K), boost(K);
    std::vector<int32_t> recent_items, higher(K);
    std::vector<double> recent_ts;
    std::vector<SparseScore> sparse;
    advance_prefix(P, prefix, a, b, u, h);
    // The items seen (the test ones join as they are): what the prior rules out on a log without repeats.
    ItemSet seen_items = tr.rules_out_seen() ? known_items(prefix.items + a, b - a) : ItemSet();
    double last = prefix.timestamps[b - 1];
    auto dot_item = [&](int64_t i) { return dot(h.data(), O + i * H, H); };
    for (int64_t j = ta; j < tb; ++j) {
      const int32_t y = test.items[j];
      if (y < 0) {
        for (int k = 0; k < K; ++k) ranks[k * n_test + j] = 0;
      } else {
        // Recent events (prefix and test so far, oldest first) give the repeat and transition boosts.
        const int64_t seen = (b - a) + (j - ta);
        const int64_t n_recent = std::min<int64_t>(seen, kRepeatWindow);
        recent_items.clear();
        recent_ts.clear();
        for (int64_t q = seen - n_recent; q < seen; ++q) {
          const bool in_prefix = q < b - a;
          recent_items.push_back(in_prefix ? prefix.items[a + q] : test.items[ta + q - (b - a)]);
          recent_ts.push_back(in_prefix ? prefix.timestamps[a + q] : test.timestamps[ta + q - (b - a)]);
        }
        merge_sparse(repeat_boosts(P, h.data(), recent_items.data(), recent_ts.data(), n_recent),
                     tr.sparse_terms(recent_items.data(), n_recent, &seen_items), sparse);
        // A boost is the repeat boost plus the weighted prior term, as in a query (Transitions::add_boosts).
        auto boosts_of = [&](const SparseScore& e) {
          for (int k = 0; k < K; ++k) boost[k] = e.repeat + static_cast<float>(weights[k] * e.prior);
        };
        const float dy = dot_item(y);
        for (int k = 0; k < K; ++k) sy[k] = dy + bias[k][y];
        for (const SparseScore& e : sparse)
          if (e.item == y) {
            boosts_of(e);
            for (int k = 0; k < K; ++k) sy[k] += boost[k];
          }
        std::fill(higher.begin(), higher.end(), 0);
        for (int64_t i = 0; i < P.n_items; ++i) {  // y itself never counts (its own boost may be negative)
          if (i == y) continue;
          const float d = dot_item(i);
          for (int k = 0; k < K; ++k) higher[k] += d + bias[k][i] > sy[k];
        }
        for (const SparseScore& e : sparse) {  // the boosted items' own scores replace their base ones
          if (e.item == y) continue;
          const float d = dot_item(e.item);
          boosts_of(e);
          for (int k = 0; k < K; ++k) {
            const float base = d + bias[k][e.item];
            higher[k] += (base + boost[k] > sy[k]) - (base > sy[k]);
          }
        }
        for (int k = 0; k < K; ++k) ranks[k * n_test + j] = higher[k] + 1;
      }
      const float gap = static_cast<float>(test.timestamps[j] - last);
      advance(P, u.data(), h.data(), false, test.items + j, &gap, test.new_session + j, 1);
      last = test.timestamps[j];
      if (tr.rules_out_seen()) insert_item(seen_items, y);
    }
  }, 4);
}

void session_start_ranks(const Params& P, const Transitions& tr, const EventArrays& prefix, const EventArrays& test,
                         const std::vector<std::pair<float, bool>>& options, int32_t* ranks, int num_threads,
                         const NeighborIndex* nb, const std::vector<float>& betas) {
  prefix.validate(P.n_items);
  test.validate(P.n_items);
  require(prefix.n_users == test.n_users, "prefix and test must have the same users");
  for (const auto& option : options) check_session_start_mix(option.first);
  require(!betas.empty(), "session_start_ranks needs at least one neighbour share");
  for (float beta : betas)
    require(std::isfinite(beta) && beta >= 0.f && beta < 1.f, "neighbour shares must be in [0, 1)");
  require(nb != nullptr || (betas.size() == 1 && betas[0] == 0.f), "neighbour shares above 0 need a neighbour index");
  if (nb) {
    nb->validate(P.n_items);
    require(static_cast<int64_t>(nb->own_session.size()) == prefix.n_users,
            "the neighbour index must have the prefix's users");
  }
  const int H = P.H;
  const int64_t n_users = test.n_users, n_betas = static_cast<int64_t>(betas.size());
  const float* O = P.out_rows();
  const std::vector<float> bias = tr.item_bias(P.bo);
  parallel_for(n_users, num_threads, [&](int64_t user) {
    const int64_t a = prefix.offsets[user], b = prefix.offsets[user + 1];
    const int64_t ta = test.offsets[user];
    auto rank = [&](size_t option, int64_t beta) -> int32_t& {
      return ranks[(option * n_betas + beta) * n_users + user];
    };
    for (size_t k = 0; k < options.size(); ++k)
      for (int64_t m = 0; m < n_betas; ++m) rank(k, m) = 0;
    if (ta == test.offsets[user + 1] || test.items[ta] < 0) return;
    if (b == a) invalid("session_start_ranks: user " + std::to_string(user) + " has test events but no history");
    std::vector<float> u, h, v(H), dense(P.n_items), boosted, mixed(nb ? P.n_items : 0);
    advance_prefix(P, prefix, a, b, u, h);
    const ItemSet seen = tr.rules_out_seen() ? known_items(prefix.items + a, b - a) : ItemSet();
    const int64_t n_recent = std::min<int64_t>(b - a, kRepeatWindow);
    const int32_t* recent_items = prefix.items + b - n_recent;
    const double* recent_ts = prefix.timestamps + b - n_recent;
    const int32_t y = test.items[ta];
    SparseItems votes;  // as a query's (Engine::recommend_batch): for the prefix's last session
    if (nb) {
      int64_t start = b - 1;
      while (start > a && !prefix.new_session[start]) --start;
      const int64_t from = std::max(start, b - kMaxNeighborSession);
      votes = nb->votes(prefix.items + from, b - from, nb->own(user, start - a), &seen);
    }
    std::vector<bool> done(options.size(), false);
    for (size_t first = 0; first < options.size(); ++first) {
      if (done[first]) continue;
      // The options of one mix share its state and so every item's dense score: one catalogue pass.
      const float mix = options[first].first;
      session_start_state(P, mix, u.data(), h.data(), v.data());
      for (int64_t i = 0; i < P.n_items; ++i) dense[i] = dot(v.data(), O + i * H, H) + bias[i];
      for (size_t k = first; k < options.size(); ++k) {
        if (done[k] || options[k].first != mix) continue;
        done[k] = true;
        // The scores of a query flagged new_session (Engine::recommend_batch): the boosts from v.
        Boosts boosts = repeat_boosts(P, v.data(), recent_items, recent_ts, n_recent);
        tr.add_boosts(recent_items, n_recent, &seen, boosts, options[k].second);
        // The mixture's normaliser and the network's own rank do not depend on the share.
        const bool mixes = !votes.empty() && std::any_of(betas.begin(), betas.end(), [](float b) { return b > 0.f; });
        double log_norm = 0.0;
        if (mixes) {
          boosted.assign(dense.begin(), dense.end());
          for (const auto& [i, bst] : boosts) boosted[i] += bst;
          log_norm = top_log_sum_exp(boosted.data(), P.n_items);
        }
        int32_t alone = 0;
        for (int64_t m = 0; m < n_betas; ++m) {
          if (betas[m] > 0.f && mixes) {  // the query's mixture (Engine::mix_neighbors)
            for (int32_t i = 0; i < P.n_items; ++i) mixed[i] = mixed_score(boosted[i], log_norm, 0.f, betas[m]);
            for (const auto& [i, share] : votes) mixed[i] = mixed_score(boosted[i], log_norm, share, betas[m]);
            int32_t higher = 0;
            for (int32_t i = 0; i < P.n_items; ++i) higher += i != y && mixed[i] > mixed[y];
            rank(k, m) = higher + 1;
            continue;
          }
          if (alone == 0) {
            const auto it = std::lower_bound(boosts.begin(), boosts.end(), std::make_pair(y, -HUGE_VALF));
            const float sy = dense[y] + (it != boosts.end() && it->first == y ? it->second : 0.f);
            int32_t higher = 0;
            for (int32_t i = 0; i < P.n_items; ++i) higher += i != y && dense[i] > sy;
            for (const auto& [i, bst] : boosts)
              if (i != y) higher += (dense[i] + bst > sy) - (dense[i] > sy);
            alone = higher + 1;
          }
          rank(k, m) = alone;
        }
      }
    }
  }, 4);
}

}  // namespace hrnn
