#include "hrnn/engine.h"

#include <algorithm>
#include <iterator>
#include <string>

#include "hrnn/errors.h"
#include "hrnn/parallel.h"
#include "hrnn/repeat.h"
#include "hrnn/step.h"

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
  const bool need_seen = q.exclude_interacted || (transitions.active() && transitions.rules_out_seen());
  const int64_t recent = std::max<int64_t>(repeat ? kRepeatWindow : 0, transitions.history());
  constexpr int64_t kBlock = 256;
  const float start_mix = session_start_mix;
  const bool start_sources = session_start_sources;
  parallel_for((n + kBlock - 1) / kBlock, num_threads, [&](int64_t blk) {
    std::vector<int32_t> seen, recent_items;
    std::vector<double> recent_ts;
    std::vector<float> user_state(H);
    for (int64_t r = blk * kBlock; r < std::min(n, (blk + 1) * kBlock); ++r) {
      const int64_t u = user_idx[r];
      float* h = hs_all.data() + r * H;
      const bool starts = q.new_session && q.new_session[r];
      has_state[r] = u >= 0 && users.read(u, starts ? user_state.data() : nullptr, h, need_seen ? &seen : nullptr,
                                          recent, &recent_items, &recent_ts);
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
      if (repeat)
        boosts_all[r] = repeat_boosts(params, h, recent_items.data(), recent_ts.data(),
                                      static_cast<int64_t>(recent_items.size()));
      transitions.add_boosts(recent_items.data(), static_cast<int64_t>(recent_items.size()), &seen, boosts_all[r],
                             !starts || start_sources);
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
  // The users with a state, compacted to the front in place (warm[j] >= j).
  std::vector<int64_t> warm;
  for (int64_t r = 0; r < n; ++r) {
    if (!has_state[r]) continue;
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

}  // namespace hrnn
