// The per-row training losses over a step's candidate columns (docs/engine.md).
#pragma once
#include <cstdint>

namespace hrnn {

enum class LossKind { Softmax, BprMax };

struct LossConfig {
  LossKind kind = LossKind::Softmax;
  bool logq = true;     // subtract log(sampling probability) from the logits (softmax only)
  float bpreg = 1.0f;   // BPR-max score regularisation
};

// One lane's loss at one step. r: raw scores of the C candidate columns; logq_c: log sampling
// probability of each column's item; included: which columns take part; own: the target's column.
// Returns the unweighted loss and writes dr[c] = scale * d loss / d r[c] (0 for excluded columns).
float row_loss(const LossConfig& cfg, const float* r, const float* logq_c, const uint8_t* included,
               int C, int own, float scale, float* dr);

}  // namespace hrnn
