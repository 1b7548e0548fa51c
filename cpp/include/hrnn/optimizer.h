// Adagrad (with optional momentum, as GRU4Rec) and Adam, with sparse updates of the item-table rows
// that a window touched.
#pragma once
#include <cstdint>
#include <vector>

#include "hrnn/params.h"
#include "hrnn/window.h"

namespace hrnn {

enum class OptKind { Adagrad, Adam };

struct OptConfig {
  OptKind kind = OptKind::Adagrad;
  float lr = 0.05f;
  float momentum = 0.0f;  // Adagrad
  float beta1 = 0.9f, beta2 = 0.999f;  // Adam
  float eps = 1e-6f;
  float repeat_lr_scale = 0.1f;  // the repeat score's state part (rV) learns slower
};

class Optimizer {
 public:
  Optimizer() = default;
  Optimizer(const Params& P, const OptConfig& cfg);
  void step(Params& P, const Gradients& g, int num_threads);
  const OptConfig& config() const { return cfg_; }

 private:
  struct State {  // first and second slots, each the size of the parameter (second unused when empty)
    std::vector<float> a, b;
  };
  void update(float* p, const float* g, float* a, float* b, int64_t n, float lr) const;
  void update_row(float* p, const float* g, State& s, int64_t offset, int64_t n, float lr) const;
  OptConfig cfg_;
  int64_t t_ = 0;
  float bc1_ = 1.f, bc2_ = 1.f;  // Adam bias corrections of the current step
  std::vector<State> dense_;
  std::vector<float> dense_lr_;
  State E_, O_, bo_;
};

}  // namespace hrnn
