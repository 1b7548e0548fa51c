#include "hrnn/engine.h"

#include "hrnn/errors.h"

namespace hrnn {

Engine::Engine(int64_t n_items, int hidden, bool tied, uint64_t seed) : params(n_items, hidden, tied) {
  params.init_random(seed);
}

void Engine::start_training(const TrainConfig& cfg, const double* popularity) {
  trainer_ = std::make_unique<Trainer>(params, cfg, popularity);
}

EpochStats Engine::train_epoch(const EventArrays& ev, const float* weights, const std::vector<int64_t>& users,
                               const Trainer::StopFn& should_stop) {
  require(trainer_ != nullptr, "start_training must be called before train_epoch");
  ev.validate(params.n_items);
  return trainer_->run_epoch(ev, weights, users, should_stop);
}

void Engine::compute_states(const EventArrays& ev, int num_threads) {
  ev.validate(params.n_items);
  std::vector<float> U(static_cast<size_t>(ev.n_users) * params.H), Hs(U.size());
  hrnn::compute_states(params, ev, U.data(), Hs.data(), num_threads);
  U_.swap(U);
  Hs_.swap(Hs);
  n_users_ = ev.n_users;
}

}  // namespace hrnn
