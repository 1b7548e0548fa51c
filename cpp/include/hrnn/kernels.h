// Row-wise vector kernels (dot, axpy, prefetch) that everything else is written in.
#pragma once
#include <cmath>
#include <cstdint>

#include "hrnn/fast_math.h"

namespace hrnn {

inline float dot(const float* __restrict a, const float* __restrict b, int n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline void axpy(float a, const float* __restrict x, float* __restrict y, int n) {
#pragma omp simd
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

// Asks for the cache lines of n floats at p ahead of their use.
inline void prefetch_row(const float* p, int n) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int off = 0; off < n * static_cast<int>(sizeof(float)); off += 64) __builtin_prefetch(c + off);
}

}  // namespace hrnn
