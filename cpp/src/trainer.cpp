#include "hrnn/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "hrnn/errors.h"
#include "hrnn/parallel.h"
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
                          size_t& next_user, uint64_t window) {
  const int T = cfg_.bptt, B = static_cast<int>(lanes_.size()), S = cfg_.n_sample;
  const int64_t TB = static_cast<int64_t>(T) * B;
  plan_pos_.assign(TB, -1);
  plan_start_.resize(TB);
  bool any = false;
  // Serial: which event each lane is at (lanes take the next user as they run out).
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
      plan_pos_[i] = p;
      plan_start_[i] = L.start;
      any = true;
    }
  }
  // In parallel: every step's negatives (each step its own random stream, so that the draws do not
  // depend on the thread count) and the recent lists.
  parallel_for(T, cfg_.num_threads, [&](int64_t t) {
    Rng rng(cfg_.seed ^ 0x4E4547ull, window, static_cast<uint64_t>(t));
    for (int s = 0; s < S; ++s) win_.negatives[t * S + s] = sampler_.draw(rng);
  });
  recent_.build(ev.items, ev.timestamps, plan_start_.data(), plan_pos_.data(), cfg_.repeat,
                cfg_.repeat_negatives, cfg_.num_threads, win_);
  return any;
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
  while (plan_window(ev, weights, order, next_user, static_cast<uint64_t>(window_counter_ + 1))) {
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
  const WindowResult last = runner_->finish_epoch();
  loss_sum += last.loss_sum;
  st.events += last.n_targets;
  ++epoch_;
  st.loss = st.events > 0 ? loss_sum / st.events : 0.0;
  return st;
}

}  // namespace hrnn
