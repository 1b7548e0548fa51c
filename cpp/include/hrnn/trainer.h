// Training epochs: user-parallel lanes, windows of bptt steps, one optimizer step per window
// (docs/engine.md, "How an epoch forms windows"). The whole epoch runs here, without Python.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "hrnn/events.h"
#include "hrnn/optimizer.h"
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

class Trainer {
 public:
  // popularity: one weight per item (recency-weighted counts) for negative sampling and logQ.
  Trainer(Params& P, const TrainConfig& cfg, const double* popularity);
  // users: the users to train on, in any order (those with fewer than 2 events are skipped);
  // weights: per-event loss weights, or nullptr for 1. should_stop is asked between windows with the
  // epoch's figures so far; when it says true the epoch ends after the current window's update, with
  // interrupted = true.
  using StopFn = std::function<bool(const EpochStats&)>;
  EpochStats run_epoch(const EventArrays& ev, const float* weights, const std::vector<int64_t>& users,
                       const StopFn& should_stop);

 private:
  struct Lane {
    int64_t user = -1, pos = 0, end = 0, start = 0;
  };
  // Fills win_ with the next bptt steps; returns false when no lane has anything left.
  bool plan_window(const EventArrays& ev, const float* weights, const std::vector<int64_t>& order,
                   size_t& next_user, Rng& rng);

  void add_recent(const EventArrays& ev, int64_t start, int64_t p);

  struct Recent {
    int32_t item;
    uint8_t pos, age;
  };
  std::vector<Recent> recent_;
  Params& P_;
  TrainConfig cfg_;
  AliasSampler sampler_;
  Optimizer opt_;
  WindowEngine engine_;
  Gradients grads_;
  Window win_;
  std::vector<Lane> lanes_;
  int64_t epoch_ = 0, window_counter_ = 0;
};

}  // namespace hrnn
