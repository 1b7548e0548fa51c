#include "hrnn/kernels.h"

namespace hrnn {

void matvec_add(const float* W, int J, int K, const float* x, float* y) {
  for (int j = 0; j < J; ++j) y[j] += dot(W + static_cast<int64_t>(j) * K, x, K);
}

}  // namespace hrnn
