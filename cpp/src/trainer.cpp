#include "hrnn/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "hrnn/errors.h"
#include "hrnn/repeat.h"
#include "hrnn/step.h"

namespace hrnn {

void TrainConfig::validate() const {
  require(batch_size >= 1 && batch_size <= 65536, "batch_size must be in [1, 65536], got " + std::to_string(batch_size));
  require(bptt >= 1 && bptt <= 1024, "bptt must be in [1, 1024], got " + std::to_string(bptt));
  require(n_sample >= 0 && n_sample <= 1 << 20, "n_sample must be in [0, 1048576], got " + std::to_string(n_sample));
  require(dropout >= 0.f && dropout < 1.f, "dropout must be in [0, 1)");
  require(std::isfinite(loss.bpreg) && loss.bpreg >= 0.f, "bpreg must be >= 0");
}

void EventArrays::validate(int64_t n_items) const {
  require(n_users >= 0 && n_events >= 0, "negative sizes");
  require(offsets != nullptr && offsets[0] == 0 && offsets[n_users] == n_events,
          "offsets must start at 0 and end at the number of events");
  for (int64_t u = 0; u < n_users; ++u) {
    require(offsets[u] <= offsets[u + 1], "offsets must be non-decreasing (user " + std::to_string(u) + ")");
    for (int64_t i = offsets[u]; i < offsets[u + 1]; ++i) {
      require(items[i] >= -1 && items[i] < n_items, "item index out of range at event " + std::to_string(i) +
                                                        ": " + std::to_string(items[i]));
      require(std::isfinite(timestamps[i]), "timestamp is not finite at event " + std::to_string(i));
      require(i == offsets[u] || timestamps[i] >= timestamps[i - 1],
              "timestamps must be sorted within each user (event " + std::to_string(i) + ")");
    }
  }
}

CpuWindowRunner::CpuWindowRunner(Params& P, const OptConfig& opt, int num_threads)
    : P_(P), opt_(P, opt), num_threads_(num_threads) {}

WindowResult CpuWindowRunner::train(Window& w, const float* logq, const WindowConfig& cfg) {
  const WindowResult r = engine_.run(P_, w, logq, cfg, grads_);
  if (r.n_targets > 0) opt_.step(P_, grads_, num_threads_);
  const int H = P_.H;
  for (int b = 0; b < w.B; ++b) {  // carry the lane states into the next window, without gradient
    std::memmove(w.u_init.data() + static_cast<int64_t>(b) * H, engine_.final_u(b), sizeof(float) * H);
    std::memmove(w.h_init.data() + static_cast<int64_t>(b) * H, engine_.final_h(b), sizeof(float) * H);
  }
  return r;
}

Trainer::Trainer(Params& P, const TrainConfig& cfg, const double* popularity, std::unique_ptr<WindowRunner> runner)
    : P_(P), cfg_(cfg), sampler_(popularity, P.n_items, cfg.sample_alpha) {
  cfg_.validate();
  runner_ = runner ? std::move(runner) : std::make_unique<CpuWindowRunner>(P, cfg.opt, cfg.num_threads);
}

bool Trainer::plan_window(const EventArrays& ev, const float* weights, const std::vector<int64_t>& order,
                          size_t& next_user, Rng& rng) {
  const int T = cfg_.bptt, B = static_cast<int>(lanes_.size()), S = cfg_.n_sample;
  bool any = false;
  win_.rep_pos.clear();
  win_.rep_age.clear();
  win_.ext_items.clear();
  win_.ext_occ_offsets.assign(1, 0);
  win_.ext_pos.clear();
  win_.ext_age.clear();
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) {
      Lane& L = lanes_[b];
      const int64_t i = static_cast<int64_t>(t) * B + b;
      uint8_t flags = 0;
      if (L.user < 0 || L.pos + 1 >= L.end) {  // the lane's user has nothing left to predict
        L.user = -1;
        while (next_user < order.size()) {
          const int64_t u = order[next_user++];
          if (ev.offsets[u + 1] - ev.offsets[u] >= 2) {
            L = {u, ev.offsets[u], ev.offsets[u + 1], ev.offsets[u]};
            flags = kFresh;
            break;
          }
        }
        if (L.user < 0) {
          win_.items[i] = win_.targets[i] = -1;
          win_.flags[i] = 0;
          win_.rep_offsets[i + 1] = static_cast<int32_t>(win_.rep_pos.size());
          win_.ext_offsets[i + 1] = static_cast<int32_t>(win_.ext_items.size());
          continue;
        }
      }
      const int64_t p = L.pos++;
      if (ev.new_session[p]) flags |= kNewSession;
      win_.items[i] = ev.items[p];
      win_.targets[i] = ev.items[p + 1];
      win_.flags[i] = flags;
      win_.gaps[i] = flags & kFresh ? 0.f : static_cast<float>(ev.timestamps[p] - ev.timestamps[p - 1]);
      win_.weights[i] = weights ? weights[p + 1] : 1.f;
      if (cfg_.repeat) add_recent(ev, L.start, p);
      win_.rep_offsets[i + 1] = static_cast<int32_t>(win_.rep_pos.size());
      win_.ext_offsets[i + 1] = static_cast<int32_t>(win_.ext_items.size());
      any = true;
    }
    for (int s = 0; s < S; ++s) win_.negatives[static_cast<int64_t>(t) * S + s] = sampler_.draw(rng);
  }
  return any;
}

// The lane's last kRepeatWindow events up to p: the target's occurrences, and the other items as
// extra candidate columns with their occurrences (docs/engine.md, "Repeat score").
void Trainer::add_recent(const EventArrays& ev, int64_t start, int64_t p) {
  const int32_t y = ev.items[p + 1];
  recent_.clear();
  for (int64_t j = std::max(start, p - kRepeatWindow + 1); j <= p; ++j) {
    const int32_t it = ev.items[j];
    if (it < 0) continue;
    const uint8_t pos = pos_bucket(p - j), age = age_bucket(ev.timestamps[p] - ev.timestamps[j]);
    if (it == y) {
      win_.rep_pos.push_back(pos);
      win_.rep_age.push_back(age);
    } else if (cfg_.repeat_negatives) {
      recent_.push_back({it, pos, age});
    }
  }
  std::stable_sort(recent_.begin(), recent_.end(), [](const Recent& a, const Recent& b) { return a.item < b.item; });
  for (size_t k = 0; k < recent_.size(); ++k) {
    if (k == 0 || recent_[k].item != recent_[k - 1].item) {
      if (k > 0) win_.ext_occ_offsets.push_back(static_cast<int32_t>(win_.ext_pos.size()));
      win_.ext_items.push_back(recent_[k].item);
    }
    win_.ext_pos.push_back(recent_[k].pos);
    win_.ext_age.push_back(recent_[k].age);
  }
  if (!recent_.empty()) win_.ext_occ_offsets.push_back(static_cast<int32_t>(win_.ext_pos.size()));
}

EpochStats Trainer::run_epoch(const EventArrays& ev, const float* weights, const std::vector<int64_t>& users,
                              const StopFn& should_stop) {
  const int T = cfg_.bptt, H = P_.H;
  int64_t trainable = 0;
  for (int64_t u : users) {
    require(u >= 0 && u < ev.n_users, "training user index out of range: " + std::to_string(u));
    trainable += ev.offsets[u + 1] - ev.offsets[u] >= 2;
  }
  // More lanes than users with something to predict would only be empty lanes (and memory).
  const int B = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(cfg_.batch_size, trainable)));
  Rng rng(cfg_.seed, 0xE90C, static_cast<uint64_t>(epoch_));
  std::vector<int64_t> order(users);
  for (size_t k = order.size(); k > 1; --k) std::swap(order[k - 1], order[rng.below(k)]);

  win_.resize(T, B, cfg_.n_sample, H);
  lanes_.assign(B, Lane{});
  WindowConfig wc{cfg_.loss, cfg_.dropout, 0, cfg_.num_threads};
  EpochStats st;
  double loss_sum = 0.0;
  size_t next_user = 0;
  while (plan_window(ev, weights, order, next_user, rng)) {
    wc.dropout_seed = cfg_.seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(++window_counter_));
    const WindowResult r = runner_->train(win_, sampler_.logq().data(), wc);
    loss_sum += r.loss_sum;
    st.events += r.n_targets;
    ++st.windows;
    st.loss = st.events > 0 ? loss_sum / st.events : 0.0;
    if (should_stop && should_stop(st)) {
      st.interrupted = true;
      break;
    }
  }
  runner_->finish_epoch();
  ++epoch_;
  st.loss = st.events > 0 ? loss_sum / st.events : 0.0;
  return st;
}

}  // namespace hrnn
