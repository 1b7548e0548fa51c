#include "hrnn/loss.h"

#include <cmath>
#include <limits>

#include "hrnn/kernels.h"

namespace hrnn {

float bpr_max_row(float bpreg, const float* r, const uint8_t* inc, int C, int own, float scale, float* dr) {
  constexpr double kEps = 1e-24;
  float m = -std::numeric_limits<float>::infinity();
  for (int c = 0; c < C; ++c)
    if (inc[c] && c != own && r[c] > m) m = r[c];
  // dr holds s_j (softmax over the negatives) until the gradient is formed.
  double Z = 0.0;
  for (int c = 0; c < C; ++c) {
    dr[c] = (inc[c] && c != own) ? std::exp(r[c] - m) : 0.f;
    Z += dr[c];
  }
  double A = 0.0, R = 0.0, Bsum = 0.0;  // Bsum = sum_j s_j sig_j (1 - sig_j)
  for (int c = 0; c < C; ++c) {
    if (dr[c] == 0.f) continue;
    dr[c] = static_cast<float>(dr[c] / Z);
    const double sig = fast_sigmoid(r[own] - r[c]);
    A += dr[c] * sig;
    R += dr[c] * double(r[c]) * r[c];
    Bsum += dr[c] * sig * (1.0 - sig);
  }
  const double inv = 1.0 / (A + kEps);
  const float ce = static_cast<float>(-std::log(A + kEps) + bpreg * R);
  for (int c = 0; c < C; ++c) {
    const double s = dr[c];
    if (s == 0.0) continue;
    const double sig = fast_sigmoid(r[own] - r[c]);
    const double g = -inv * (s * (sig - A) - s * sig * (1.0 - sig)) +
                     bpreg * s * (2.0 * r[c] + double(r[c]) * r[c] - R);
    dr[c] = static_cast<float>(scale * g);
  }
  dr[own] = static_cast<float>(scale * (-inv * Bsum));
  return ce;
}

}  // namespace hrnn
