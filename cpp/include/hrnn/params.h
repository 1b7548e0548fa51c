// Model parameters (docs/engine.md): the small dense blocks, and the per-item tables.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hrnn {

constexpr int kTimeFeatures = 2;
constexpr int kPosBuckets = 8, kAgeBuckets = 8, kRepeatCols = kPosBuckets + kAgeBuckets;

// The dense (non per-item) blocks. Used for parameters, gradients and optimizer state alike.
struct Dense {
  std::vector<float> Wg, Vg, bg, W0, b0, Wsx, Wsh, bs, Wux, Wuh, bu, u0;
  std::vector<float> rc, rd, rV;  // the repeat score (docs/engine.md, "Repeat score")

  void resize(int H);
  void zero();
  // Calls f(name, vector&) for each block, always in the same order.
  template <class F>
  void for_each(F&& f) {
    f("Wg", Wg); f("Vg", Vg); f("bg", bg); f("W0", W0); f("b0", b0); f("Wsx", Wsx); f("Wsh", Wsh);
    f("bs", bs); f("Wux", Wux); f("Wuh", Wuh); f("bu", bu); f("u0", u0);
    f("rc", rc); f("rd", rd); f("rV", rV);
  }
  template <class F>
  void for_each(F&& f) const {
    const_cast<Dense*>(this)->for_each([&](const char* n, std::vector<float>& v) {
      f(n, static_cast<const std::vector<float>&>(v));
    });
  }
};

struct Params {
  int64_t n_items = 0;
  int H = 0;
  bool tied = false;
  std::vector<float> E, O, bo;  // O is empty when tied
  Dense d;

  Params() = default;
  Params(int64_t n_items, int H, bool tied);

  const float* out_rows() const { return tied ? E.data() : O.data(); }
  float* out_rows() { return tied ? E.data() : O.data(); }
  // Expected shape of a block, by name; throws std::invalid_argument for an unknown name.
  std::vector<int64_t> shape(const std::string& name) const;
  std::vector<float>& block(const std::string& name);
  std::vector<std::string> names() const;
  // Random initialisation (uniform in +-scale/sqrt(H) for matrices, zero biases), seeded.
  void init_random(uint64_t seed);
};

}  // namespace hrnn
