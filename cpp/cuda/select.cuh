// Keys that order float scores as unsigned integers, and the in-block sort of (key, item) pairs,
// shared by the exact top-k kernels: the order is the CPU TopK's (higher score first, then the
// lower item index), and NaN / -inf are never returned.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

namespace hrnn::cuda {

// Larger float -> larger key; 0 for NaN and -inf, which are never returned, and -0 keyed as +0
// (they tie, as floats).
__device__ inline uint32_t order_key(float x) {
  if (!(x > -INFINITY)) return 0u;
  if (x == 0.f) x = 0.f;
  const uint32_t u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ inline float key_value(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// key a ranks before key b: higher score, then lower item.
__device__ inline bool before(uint32_t ka, int32_t ia, uint32_t kb, int32_t ib) {
  return ka > kb || (ka == kb && ia < ib);
}

// Sorts keys/idx[0, P) best first (P a power of two) with the block's threads; ends synchronised.
__device__ inline void block_bitonic_sort(uint32_t* keys, int32_t* idx, uint32_t P) {
  for (uint32_t size = 2; size <= P; size <<= 1) {
    for (uint32_t stride = size / 2; stride > 0; stride >>= 1) {
      for (uint32_t i = threadIdx.x; i < P; i += blockDim.x) {
        const uint32_t j = i ^ stride;
        if (j <= i) continue;
        const bool up = (i & size) == 0;
        const bool swap = up ? before(keys[j], idx[j], keys[i], idx[i]) : before(keys[i], idx[i], keys[j], idx[j]);
        if (swap) {
          const uint32_t tk = keys[i];
          keys[i] = keys[j];
          keys[j] = tk;
          const int32_t ti = idx[i];
          idx[i] = idx[j];
          idx[j] = ti;
        }
      }
      __syncthreads();
    }
  }
}

}  // namespace hrnn::cuda
