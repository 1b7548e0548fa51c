// Small, fast, seedable random numbers. Streams are derived from (seed, stream ids) so that
// results do not depend on which thread draws them.
#pragma once
#include <cstdint>

// The CUDA engine (cpp/cuda) draws the same dropout masks on the device.
#if defined(__CUDACC__)
#define HRNN_HOST_DEVICE __host__ __device__
#else
#define HRNN_HOST_DEVICE
#endif

namespace hrnn {

HRNN_HOST_DEVICE inline uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Rng {  // xoshiro256**
 public:
  HRNN_HOST_DEVICE explicit Rng(uint64_t seed = 0, uint64_t stream = 0, uint64_t substream = 0) {
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull) ^ (substream * 0x8CB92BA72F3D8DD7ull);
    for (auto& v : s_) v = splitmix64(x);
  }
  HRNN_HOST_DEVICE uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0]; s_[3] ^= s_[1]; s_[1] ^= s_[2]; s_[0] ^= s_[3];
    s_[2] ^= t; s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1).
  double uniform() { return (next() >> 11) * 0x1.0p-53; }
  HRNN_HOST_DEVICE float uniformf() { return (next() >> 40) * 0x1.0p-24f; }
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) { return static_cast<uint64_t>((static_cast<__uint128_t>(next()) * n) >> 64); }

 private:
  HRNN_HOST_DEVICE static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace hrnn
