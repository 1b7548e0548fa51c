// The output layer of one step (docs/engine.md, "A training window"): the candidate columns, the
// repeat terms, the extra columns, the sampled softmax / BPR-max rows, and their gradients.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "hrnn/loss.h"
#include "window_buffers.cuh"
#include "window_data.cuh"

namespace hrnn::cuda {

struct OutputRefs {  // the parameters the output layer reads
  const float *out_rows, *bo, *rc, *rd, *rV, *logq;
};

struct LossRefs {
  LossKind kind;
  bool logq;
  float bpreg, scale_base;  // scale_base: 1 / the window's number of targets
};

// OC, CB, CLQ of step t (zero rows for empty columns).
void out_gather_columns(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const OutputRefs& p,
                        bool logq, int t);
// EXT_S of step t's extra columns (after HV): O[i] . h_out + bo[i] + their repeat terms.
void out_extra_scores(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const OutputRefs& p, int e0,
                      int e1, int t);
// Each lane's loss row: R (with CB) becomes d loss / d score, EXT_G, GHV and LOSS of step t.
void out_loss_rows(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const OutputRefs& p,
                   const LossRefs& loss, int t);
// After DHLOSS = R . OC: the extra columns' and the repeat terms' part, then the dropout mask.
void out_state_grads(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const OutputRefs& p, bool dropout,
                     int t);
// The candidate rows' bias gradients (column sums of R) and the extra columns' row gradients.
void out_bias_grads(cudaStream_t s, const WindowBuffers& w, const WindowView& v, float* gb, int t);
void out_extra_grads(cudaStream_t s, const WindowBuffers& w, const WindowView& v, float* g_out, float* gb, int e0,
                     int e1);

}  // namespace hrnn::cuda
