// Training epochs: user-parallel lanes, windows of bptt steps, one optimizer step per window
// (docs/engine.md, "How an epoch forms windows"). The whole epoch runs here, without Python.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "hrnn/events.h"
#include "hrnn/optimizer.h"
#include "hrnn/recent_lists.h"
#include "hrnn/sampler.h"
#include "hrnn/window.h"

namespace hrnn {

struct TrainConfig {
  int batch_size = 64, bptt = 32, n_sample = 2048;
  double sample_alpha = 0.75;
  LossConfig loss;
  OptConfig opt;
  float dropout = 0.f;
  bool repeat = true;           // learn the repeat score (docs/engine.md)
  bool repeat_negatives = true;  // the lane's other recent items are extra candidate columns
  uint64_t seed = 0;
  int num_threads = 0;  // 0 = all cores

  void validate() const;
};

struct EpochStats {
  double loss = 0.0;  // mean weighted loss per target
  int64_t events = 0;  // targets predicted
  int64_t windows = 0;
  bool interrupted = false;
};

// What runs each planned window: forward, loss, backward and the optimizer step. The CPU engine by
// default; a device engine (cpp/cuda) keeps the parameters on the device during an epoch.
class WindowRunner {
 public:
  virtual ~WindowRunner() = default;
  // Trains on w (logq: one entry per item, the same array for the trainer's whole life); the next
  // window starts from each lane's state after this one (written into w.u_init / w.h_init, or kept
  // by the runner until finish_epoch). Returns the result of a window trained so far and not yet
  // returned (a runner may work asynchronously and return the previous window's), or none.
  virtual WindowResult train(Window& w, const float* logq, const WindowConfig& cfg) = 0;
  // Brings the host parameters up to date; called at the end of every epoch. Returns what train has
  // not returned yet.
  virtual WindowResult finish_epoch() { return {}; }
};

// The CPU engine: WindowEngine, then the optimizer on the host parameters.
class CpuWindowRunner : public WindowRunner {
 public:
  CpuWindowRunner(Params& P, const OptConfig& opt, int num_threads);
  WindowResult train(Window& w, const float* logq, const WindowConfig& cfg) override;

 private:
  Params& P_;
  Optimizer opt_;
  int num_threads_;
  WindowEngine engine_;
  Gradients grads_;
};

class Trainer {
 public:
  // popularity: one weight per item (recency-weighted counts) for negative sampling and logQ.
  // runner: what trains on each window (nullptr: the CPU engine).
  Trainer(Params& P, const TrainConfig& cfg, const double* popularity,
          std::unique_ptr<WindowRunner> runner = nullptr);
  // users: the users to train on, in any order (those with fewer than 2 events are skipped);
  // weights: per-event loss weights, or nullptr for 1. should_stop is asked between windows with the
  // epoch's figures so far (a device runner's events and loss lag one window); when it says true
  // the epoch ends after the current window's update, with interrupted = true.
  using StopFn = std::function<bool(const EpochStats&)>;
  EpochStats run_epoch(const EventArrays& ev, const float* weights, const std::vector<int64_t>& users,
                       const StopFn& should_stop);

 private:
  struct Lane {
    int64_t user = -1, pos = 0, end = 0, start = 0;
  };
  // Fills win_ with the next bptt steps; returns false when no lane has anything left. `window`
  // numbers the random streams of the step's negatives.
  bool plan_window(const EventArrays& ev, const float* weights, const std::vector<int64_t>& order,
                   size_t& next_user, uint64_t window);

  RecentLists recent_;
  std::vector<int64_t> plan_start_, plan_pos_;  // per (t, b): the lane's first event and current one
  Params& P_;
  TrainConfig cfg_;
  AliasSampler sampler_;
  std::unique_ptr<WindowRunner> runner_;
  Window win_;
  std::vector<Lane> lanes_;
  int64_t epoch_ = 0, window_counter_ = 0;
};

}  // namespace hrnn
