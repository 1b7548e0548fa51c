// The training losses' configuration, and BPR-max over a step's candidate columns (docs/engine.md).
#pragma once
#include <cstdint>

namespace hrnn {

enum class LossKind { Softmax, BprMax };

struct LossConfig {
  LossKind kind = LossKind::Softmax;
  bool logq = true;     // subtract log(sampling probability) from the logits (softmax only)
  float bpreg = 1.0f;   // BPR-max score regularisation
};

// GRU4Rec's BPR-max loss of one lane at one step (the sampled softmax is softmax_row in gemm.h).
// r: raw scores of the C candidate columns; included: which columns take part; own: the target's
// column. Returns the unweighted loss and writes dr[c] = scale * d loss / d r[c] (0 for excluded
// columns).
float bpr_max_row(float bpreg, const float* r, const uint8_t* included, int C, int own, float scale, float* dr);

}  // namespace hrnn
