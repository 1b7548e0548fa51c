#include "hrnn/engine.h"

#include <algorithm>
#include <iterator>
#include <string>

#include "hrnn/errors.h"
#include "hrnn/parallel.h"
#include "hrnn/repeat.h"
#include "hrnn/step.h"
#include "hrnn/topk.h"

namespace hrnn {

Engine::Engine(int64_t n_items, int hidden, bool tied, uint64_t seed) : params(n_items, hidden, tied) {
  params.init_random(seed);
  fallback_.assign(n_items, 0.f);
}

void Engine::start_training(const TrainConfig& cfg, const double* popularity) {
  const auto accel = accelerator();
  trainer_.reset();
  trainer_ = std::make_unique<Trainer>(params, cfg, popularity, accel ? accel->make_runner(params, cfg) : nullptr);
}

EpochStats Engine::train_epoch(const EventArrays& ev, const float* weights, const std::vector<int64_t>& users,
                               const Trainer::StopFn& should_stop) {
  require(trainer_ != nullptr, "start_training must be called before train_epoch");
  ev.validate(params.n_items);
  params_changed();
  const EpochStats st = trainer_->run_epoch(ev, weights, users, should_stop);
  params_changed();  // a device engine has just written the epoch's parameters back
  return st;
}

void Engine::params_changed() {
  std::lock_guard<std::mutex> lock(table_mu_);
  table_.reset();
  bias_.reset();
  if (accel_) accel_->params_changed();
}

void Engine::set_accelerator(std::shared_ptr<Accelerator> a) {
  std::lock_guard<std::mutex> lock(table_mu_);
  accel_ = std::move(a);
}

std::shared_ptr<Accelerator> Engine::accelerator() const {
  std::lock_guard<std::mutex> lock(table_mu_);
  return accel_;
}

void Engine::set_transitions(float weight, std::vector<int64_t> offsets, std::vector<int32_t> successors,
                             std::vector<float> counts, std::vector<float> out, const double* popularity,
                             std::vector<float> repeat_curve) {
  transitions.set(params.n_items, weight, std::move(offsets), std::move(successors), std::move(counts),
                  std::move(out), popularity, std::move(repeat_curve));
  params_changed();
}

std::shared_ptr<const std::vector<float>> Engine::bias_locked() const {
  if (!bias_) bias_ = std::make_shared<const std::vector<float>>(transitions.item_bias(params.bo));
  return bias_;
}

std::shared_ptr<const std::vector<float>> Engine::item_bias() const {
  std::lock_guard<std::mutex> lock(table_mu_);
  return bias_locked();
}

std::shared_ptr<const ScoringTable> Engine::scoring_table(int num_threads) const {
  std::lock_guard<std::mutex> lock(table_mu_);
  if (!table_) {
    auto t = std::make_shared<ScoringTable>();
    t->build(params, bias_locked()->data(), num_threads);
    table_ = std::move(t);
  }
  return table_;
}

void Engine::set_fallback_scores(std::vector<float> scores) {
  require(static_cast<int64_t>(scores.size()) == params.n_items, "one fallback score per item is needed");
  fallback_ = std::move(scores);
}

void Engine::recommend_batch(const int64_t* user_idx, int64_t n, const Query& q, int32_t* items, float* scores,
                             int num_threads) const {
  require(q.k >= 1, "k must be >= 1");
  const int H = params.H;
  // With every repeat parameter zero (a model trained without it) no item gets a boost.
  auto nonzero = [](const std::vector<float>& v) {
    return std::any_of(v.begin(), v.end(), [](float x) { return x != 0.f; });
  };
  const bool repeat = nonzero(params.d.rc) || nonzero(params.d.rd) || nonzero(params.d.rV);
  // Each user's state, exclusions and boosts, in parallel over blocks of users (a large batch spends
  // as long here as in scoring); users without a state get the fallback.
  std::vector<float> hs_all(static_cast<size_t>(n) * H);
  std::vector<ItemSet> excl_all(n);
  std::vector<Boosts> boosts_all(n);
  std::vector<uint8_t> has_state(n, 0);
  // Session starts answered by the mixture with the neighbours' votes (empty: by the network alone).
  const bool mixing = q.new_session && neighbors.active();
  // On a log without repeats the votes leave out the user's items whatever the prior's weight (as
  // session_start_ranks, which chose the share, does).
  const bool need_seen =
      q.exclude_interacted || ((transitions.active() || mixing) && transitions.rules_out_seen());
  const int64_t recent = std::max<int64_t>(repeat ? kRepeatWindow : 0, transitions.history());
  constexpr int64_t kBlock = 256;
  const float start_mix = session_start_mix;
  const bool start_sources = session_start_sources;
  std::vector<SparseItems> votes_all(mixing ? n : 0);
  parallel_for((n + kBlock - 1) / kBlock, num_threads, [&](int64_t blk) {
    std::vector<int32_t> seen, recent_items;
    std::vector<double> recent_ts;
    std::vector<float> user_state(H);
    ItemSet drop;
    for (int64_t r = blk * kBlock; r < std::min(n, (blk + 1) * kBlock); ++r) {
      const int64_t u = user_idx[r];
      float* h = hs_all.data() + r * H;
      const bool starts = q.new_session && q.new_session[r];
      const bool votes = starts && mixing;
      int64_t length = 0, session_start = -1;
      has_state[r] = u >= 0 && users.read(u, starts ? user_state.data() : nullptr, h, need_seen ? &seen : nullptr,
                                          votes ? std::max(recent, kMaxNeighborSession) : recent, &recent_items,
                                          &recent_ts, &length, &session_start);
      // The boosts read the last `recent` events; the votes the whole last session, up to its last
      // kMaxNeighborSession events.
      const int64_t n_read = static_cast<int64_t>(recent_items.size()), n_recent = std::min(n_read, recent);
      const int32_t* r_items = recent_items.data() + (n_read - n_recent);
      const double* r_ts = recent_ts.data() + (n_read - n_recent);
      if (has_state[r] && starts) session_start_state(params, start_mix, user_state.data(), h, h);
      ItemSet& ex = excl_all[r];  // both sets are sorted, each item once
      if (has_state[r] && q.exclude_interacted && q.exclude)
        std::set_union(q.exclude->begin(), q.exclude->end(), seen.begin(), seen.end(), std::back_inserter(ex));
      else if (has_state[r] && q.exclude_interacted)
        ex = seen;
      else if (q.exclude)
        ex = *q.exclude;
      if (!has_state[r]) {
        fixed_topk(fallback_.data(), params.n_items, q.k, &ex, q.include, items + r * q.k, scores + r * q.k);
        continue;
      }
      if (repeat) boosts_all[r] = repeat_boosts(params, h, r_items, r_ts, n_recent);
      transitions.add_boosts(r_items, n_recent, &seen, boosts_all[r], !starts || start_sources);
      if (votes) {
        const int64_t len = std::min(n_read, length - session_start);  // as the store marked it
        const ItemSet* never = &ex;  // what the answer may not hold, and on a log without repeats the history
        if (transitions.rules_out_seen()) {
          drop.clear();
          std::set_union(ex.begin(), ex.end(), seen.begin(), seen.end(), std::back_inserter(drop));
          never = &drop;
        }
        votes_all[r] =
            neighbors.votes(recent_items.data() + (n_read - len), len, neighbors.own(u, session_start), never);
      }
      // An excluded item is never returned: scoring need not look its boost up (with
      // exclude_interacted on a log without repeats, that is every item of the history).
      if (ex.empty()) continue;
      Boosts& b = boosts_all[r];
      size_t kept = 0;
      auto next_ex = ex.begin();
      for (const auto& entry : b) {
        next_ex = std::lower_bound(next_ex, ex.end(), entry.first);
        if (next_ex == ex.end() || *next_ex != entry.first) b[kept++] = entry;
      }
      b.resize(kept);
    }
  });
  std::vector<int64_t> mixed;
  for (int64_t r = 0; r < static_cast<int64_t>(votes_all.size()); ++r)
    if (!votes_all[r].empty()) mixed.push_back(r);
  if (!mixed.empty())
    mix_neighbors(mixed, hs_all.data(), excl_all, boosts_all, votes_all, q, items, scores, num_threads);
  // The other users with a state, compacted to the front in place (warm[j] >= j).
  std::vector<int64_t> warm;
  for (int64_t r = 0; r < n; ++r) {
    if (!has_state[r] || (mixing && !votes_all[r].empty())) continue;
    const int64_t j = static_cast<int64_t>(warm.size());
    if (j != r) {
      std::copy_n(hs_all.data() + r * H, H, hs_all.data() + j * H);
      excl_all[j] = std::move(excl_all[r]);
      boosts_all[j] = std::move(boosts_all[r]);
    }
    warm.push_back(r);
  }
  hs_all.resize(warm.size() * H);
  excl_all.resize(warm.size());
  boosts_all.resize(warm.size());
  const std::vector<float>& hs = hs_all;
  const std::vector<ItemSet>& excl = excl_all;
  const std::vector<Boosts>& boosts = boosts_all;
  if (warm.empty()) return;
  const int64_t M = static_cast<int64_t>(warm.size());
  std::vector<int32_t> wi(static_cast<size_t>(M) * q.k);
  std::vector<float> ws(wi.size());
  // The bias and the table are held for the whole query, even if the parameters change meanwhile.
  const auto accel = q.kernels == ScoreKernels::Auto ? accelerator() : nullptr;
  if (!accel || q.include ||
      !accel->score_topk(params, item_bias()->data(), hs.data(), M, q.k, excl, boosts, wi.data(), ws.data(),
                         num_threads)) {
    const auto table = scoring_table(num_threads);
    score_topk(params, *table, hs.data(), M, q.k, &excl, q.include, &boosts, wi.data(), ws.data(), num_threads,
               q.kernels);
  }
  for (int64_t j = 0; j < M; ++j) {
    std::copy_n(wi.data() + j * q.k, q.k, items + warm[j] * q.k);
    std::copy_n(ws.data() + j * q.k, q.k, scores + warm[j] * q.k);
  }
}

void Engine::mix_neighbors(const std::vector<int64_t>& rows, const float* hs, std::vector<ItemSet>& excl,
                           std::vector<Boosts>& boosts, const std::vector<SparseItems>& votes, const Query& q,
                           int32_t* items, float* scores, int num_threads) const {
  const int H = params.H, kn = std::max(q.k, kNormItems);
  const int64_t M = static_cast<int64_t>(rows.size());
  std::vector<float> hm(static_cast<size_t>(M) * H);
  std::vector<ItemSet> em(M);
  std::vector<Boosts> bm(M);
  for (int64_t j = 0; j < M; ++j) {
    std::copy_n(hs + rows[j] * H, H, hm.data() + j * H);
    em[j] = std::move(excl[rows[j]]);  // (the caller is done with the mixed rows' sets)
    bm[j] = std::move(boosts[rows[j]]);
  }
  // The network's best kn candidates of each row (exact scores, boosts included), then the voted
  // items among the candidates, scored the same way.
  std::vector<int32_t> ti(static_cast<size_t>(M) * kn);
  std::vector<float> ts(ti.size());
  score_topk(params, *scoring_table(num_threads), hm.data(), M, kn, &em, q.include, &bm, ti.data(), ts.data(),
             num_threads, q.kernels);
  const auto bias = item_bias();
  const ScoreKernelSet& K = score_kernels(q.kernels);
  parallel_for(M, num_threads, [&](int64_t j) {
    const SparseItems& v = votes[rows[j]];
    const int32_t* top_i = ti.data() + j * kn;
    const float* top_s = ts.data() + j * kn;
    const int64_t n_top = std::find(top_i, top_i + kn, -1) - top_i;
    const double log_norm = top_log_sum_exp(top_s, n_top);
    std::vector<int32_t> voted;
    for (const auto& [item, share] : v)
      if (!q.include || std::binary_search(q.include->begin(), q.include->end(), item)) voted.push_back(item);
    std::vector<float> vs(voted.size());
    K.exact(params.out_rows(), bias->data(), H, hm.data() + j * H, voted.data(), static_cast<int64_t>(voted.size()),
            vs.data());
    auto vote_of = [&](int32_t item) {
      const auto it = std::lower_bound(v.begin(), v.end(), item, [](const auto& e, int32_t i) { return e.first < i; });
      return it != v.end() && it->first == item ? it->second : 0.f;
    };
    TopK best(q.k);
    std::vector<int32_t> in_top(top_i, top_i + n_top);
    std::sort(in_top.begin(), in_top.end());
    for (int64_t c = 0; c < n_top; ++c)
      best.push(mixed_score(top_s[c], log_norm, vote_of(top_i[c]), neighbors.beta), top_i[c]);
    for (size_t c = 0; c < voted.size(); ++c) {
      if (std::binary_search(in_top.begin(), in_top.end(), voted[c])) continue;
      const auto b = std::lower_bound(bm[j].begin(), bm[j].end(), std::make_pair(voted[c], -HUGE_VALF));
      const float s = vs[c] + (b != bm[j].end() && b->first == voted[c] ? b->second : 0.f);
      best.push(mixed_score(s, log_norm, vote_of(voted[c]), neighbors.beta), voted[c]);
    }
    best.write(items + rows[j] * q.k, scores + rows[j] * q.k);
  });
}

}  // namespace hrnn
