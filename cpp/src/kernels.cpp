#include "hrnn/kernels.h"

namespace hrnn {

void matvec_add(const float* W, int J, int K, const float* x, float* y) {
  for (int j = 0; j < J; ++j) y[j] += dot(W + static_cast<int64_t>(j) * K, x, K);
}

void matvec_t_add(const float* W, int J, int K, const float* d, float* y) {
  for (int j = 0; j < J; ++j)
    if (d[j] != 0.f) axpy(d[j], W + static_cast<int64_t>(j) * K, y, K);
}

void outer_add(float* dW, int J, int K, const float* d, const float* x) {
  for (int j = 0; j < J; ++j)
    if (d[j] != 0.f) axpy(d[j], x, dW + static_cast<int64_t>(j) * K, K);
}

}  // namespace hrnn
