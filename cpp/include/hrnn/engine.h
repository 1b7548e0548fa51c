// A model as the Python layer holds it: parameters, the training state, and every user's state.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "hrnn/advance.h"
#include "hrnn/params.h"
#include "hrnn/trainer.h"

namespace hrnn {

class Engine {
 public:
  Engine(int64_t n_items, int hidden, bool tied, uint64_t seed);

  Params params;

  // Training. start_training builds the sampler and the optimizer state (discarding any earlier).
  void start_training(const TrainConfig& cfg, const double* popularity);
  EpochStats train_epoch(const EventArrays& ev, const float* weights, const std::vector<int64_t>& users,
                         const Trainer::StopFn& should_stop);
  void end_training() { trainer_.reset(); }
  bool training() const { return trainer_ != nullptr; }

  // User states after their whole history (recomputed from the events, same step as training).
  void compute_states(const EventArrays& ev, int num_threads);
  int64_t n_users() const { return n_users_; }
  const std::vector<float>& user_u() const { return U_; }
  const std::vector<float>& user_h() const { return Hs_; }

 private:
  std::unique_ptr<Trainer> trainer_;
  int64_t n_users_ = 0;
  std::vector<float> U_, Hs_;
};

}  // namespace hrnn
