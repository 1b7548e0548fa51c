#include "hrnn/params.h"

#include <cmath>

#include "hrnn/errors.h"
#include "hrnn/rng.h"

namespace hrnn {

void Dense::resize(int H) {
  const size_t h = H, h3 = 3 * h;
  Wg.assign(h * h, 0.f); Vg.assign(h * kTimeFeatures, 0.f); bg.assign(h, 0.f);
  W0.assign(h * h, 0.f); b0.assign(h, 0.f);
  Wsx.assign(h3 * h, 0.f); Wsh.assign(h3 * h, 0.f); bs.assign(h3, 0.f);
  Wux.assign(h3 * h, 0.f); Wuh.assign(h3 * h, 0.f); bu.assign(h3, 0.f);
  u0.assign(h, 0.f);
  rc.assign(kPosBuckets, 0.f); rd.assign(kAgeBuckets, 0.f); rV.assign(h * kRepeatCols, 0.f);
}

void Dense::zero() {
  for_each([](const char*, std::vector<float>& v) { std::fill(v.begin(), v.end(), 0.f); });
}

Params::Params(int64_t n_items_, int H_, bool tied_) : n_items(n_items_), H(H_), tied(tied_) {
  require(n_items > 0, "the model needs at least one item");
  require(H > 0 && H <= 4096, "hidden dimension out of range: " + std::to_string(H));
  E.assign(static_cast<size_t>(n_items) * H, 0.f);
  if (!tied) O.assign(static_cast<size_t>(n_items) * H, 0.f);
  bo.assign(n_items, 0.f);
  d.resize(H);
}

std::vector<std::string> Params::names() const {
  std::vector<std::string> out = {"E"};
  if (!tied) out.push_back("O");
  out.push_back("bo");
  d.for_each([&](const char* n, const std::vector<float>&) { out.push_back(n); });
  return out;
}

std::vector<int64_t> Params::shape(const std::string& name) const {
  const int64_t h = H, N = n_items;
  if (name == "E" || (name == "O" && !tied)) return {N, h};
  if (name == "bo") return {N};
  if (name == "Wg" || name == "W0") return {h, h};
  if (name == "Vg") return {h, kTimeFeatures};
  if (name == "bg" || name == "b0" || name == "u0") return {h};
  if (name == "Wsx" || name == "Wsh" || name == "Wux" || name == "Wuh") return {3 * h, h};
  if (name == "bs" || name == "bu") return {3 * h};
  if (name == "rc") return {kPosBuckets};
  if (name == "rd") return {kAgeBuckets};
  if (name == "rV") return {h, kRepeatCols};
  invalid("unknown parameter block '" + name + "'");
}

std::vector<float>& Params::block(const std::string& name) {
  if (name == "E") return E;
  if (name == "O" && !tied) return O;
  if (name == "bo") return bo;
  std::vector<float>* found = nullptr;
  d.for_each([&](const char* n, std::vector<float>& v) {
    if (name == n) found = &v;
  });
  if (!found) invalid("unknown parameter block '" + name + "'");
  return *found;
}

void Params::init_random(uint64_t seed) {
  Rng rng(seed, 0x5EED);
  const float scale = 1.0f / std::sqrt(static_cast<float>(H));
  auto fill = [&](std::vector<float>& v, float a) {
    for (auto& x : v) x = static_cast<float>((2.0 * rng.uniform() - 1.0) * a);
  };
  fill(E, scale);
  if (!tied) fill(O, scale);
  std::fill(bo.begin(), bo.end(), 0.f);
  fill(d.Wg, scale); fill(d.Vg, 0.1f); std::fill(d.bg.begin(), d.bg.end(), 0.f);
  fill(d.W0, scale); std::fill(d.b0.begin(), d.b0.end(), 0.f);
  fill(d.Wsx, scale); fill(d.Wsh, scale); std::fill(d.bs.begin(), d.bs.end(), 0.f);
  fill(d.Wux, scale); fill(d.Wuh, scale); std::fill(d.bu.begin(), d.bu.end(), 0.f);
  std::fill(d.u0.begin(), d.u0.end(), 0.f);
}

}  // namespace hrnn
