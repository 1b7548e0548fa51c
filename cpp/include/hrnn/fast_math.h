// exp, sigmoid and tanh written branch-free, so that the element-wise loops calling them vectorize
// for whichever instruction set the including file is compiled for. They are static: each file keeps
// its own copy, so code built for a wider instruction set is never shared with a file built without it.
#pragma once

namespace hrnn {

// 2^f for f in [-0.5, 0.5], a degree-6 polynomial; T is float or a vector of floats (the vector exp of
// the kernel files shares it).
template <class T>
static inline T exp2_fraction(T f) {
  return 1.0f + f * (0.693147182f + f * (0.240226507f + f * (0.0555041087f + f * (0.00961812911f +
                                                      f * (0.00133335581f + f * 0.000154035304f)))));
}

// exp(x) by range reduction to 2^f, f in [-0.5, 0.5], and a degree-6 polynomial (relative error ~2e-7).
static inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float t = x * 1.44269504088896341f;
  // Rounded to the nearest integer. A NaN fails the comparison and converts as -126 (converting a
  // NaN is undefined); it stays NaN in f, so the result is NaN.
  const float r = t + 0.5f * __builtin_copysignf(1.0f, t);
  const int i = static_cast<int>(r >= -126.0f ? r : -126.0f);
  const float p = exp2_fraction(t - static_cast<float>(i));
  const int bits = (i + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

static inline float fast_sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

// Absolute error ~2e-7.
static inline float fast_tanh(float x) { return 2.0f / (1.0f + fast_exp(-2.0f * x)) - 1.0f; }

}  // namespace hrnn
