#include "hrnn/step.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "hrnn/errors.h"
#include "hrnn/gemm.h"
#include "hrnn/kernels.h"

namespace hrnn {
namespace {

struct GruRefs {  // the weights of one GRU
  const float* Wx;
  const float* Wh;
  const float* b;
};

// out = GRU(x, h); r, z, n, hr are cached for the backward pass. a: 3H floats of scratch.
void gru_forward(const GruRefs& w, int H, const float* x, const float* h, float* r, float* z, float* n,
                 float* hr, float* out, float* a) {
  std::memcpy(a, w.b, sizeof(float) * 3 * H);
  matvec_add(w.Wx, 3 * H, H, x, a);
  matvec_add(w.Wh, 2 * H, H, h, a);
  for (int k = 0; k < H; ++k) {
    r[k] = fast_sigmoid(a[k]);
    z[k] = fast_sigmoid(a[H + k]);
    hr[k] = r[k] * h[k];
  }
  matvec_add(w.Wh + 2 * static_cast<int64_t>(H) * H, H, H, hr, a + 2 * H);
  for (int k = 0; k < H; ++k) {
    n[k] = fast_tanh(a[2 * H + k]);
    out[k] = (1.f - z[k]) * n[k] + z[k] * h[k];
  }
}

float* slot(float* cache, int H, StepCache::Slot s) { return cache + static_cast<int64_t>(s) * H; }

}  // namespace

void step_forward(const Params& P, const float* x, float gap, uint8_t flags, const float* u_prev,
                  const float* h_prev, float* cache) {
  using S = StepCache;
  const int H = P.H;
  const Dense& d = P.d;
  const bool fresh = flags & kFresh, new_session = flags & kNewSession;
  thread_local std::vector<float> a;
  if (a.size() < static_cast<size_t>(3 * H)) a.resize(3 * H);

  float* u = slot(cache, H, S::U);
  float* s = slot(cache, H, S::S);
  float* g = slot(cache, H, S::G);
  float* htil = slot(cache, H, S::HTil);
  if (fresh) {
    std::memcpy(u, d.u0.data(), sizeof(float) * H);
  } else {
    std::memcpy(slot(cache, H, S::UPrev), u_prev, sizeof(float) * H);
    std::memcpy(slot(cache, H, S::HPrev), h_prev, sizeof(float) * H);
    if (new_session) {
      gru_forward({d.Wux.data(), d.Wuh.data(), d.bu.data()}, H, h_prev, u_prev, slot(cache, H, S::UR),
                  slot(cache, H, S::UZ), slot(cache, H, S::UN), slot(cache, H, S::UHR), u, a.data());
    } else {
      std::memcpy(u, u_prev, sizeof(float) * H);
    }
  }
  std::memcpy(s, d.b0.data(), sizeof(float) * H);
  matvec_add(d.W0.data(), H, H, u, s);
  for (int k = 0; k < H; ++k) s[k] = fast_tanh(s[k]);

  if (fresh) {
    std::fill(g, g + H, 0.f);
    std::memcpy(htil, s, sizeof(float) * H);
  } else {
    float phi[kTimeFeatures];
    time_features(gap, new_session, phi);
    std::memcpy(g, d.bg.data(), sizeof(float) * H);
    matvec_add(d.Wg.data(), H, H, x, g);
    matvec_add(d.Vg.data(), H, kTimeFeatures, phi, g);
    for (int k = 0; k < H; ++k) {
      g[k] = fast_sigmoid(g[k]);
      htil[k] = g[k] * h_prev[k] + (1.f - g[k]) * s[k];
    }
  }
  gru_forward({d.Wsx.data(), d.Wsh.data(), d.bs.data()}, H, x, htil, slot(cache, H, S::SR),
              slot(cache, H, S::SZ), slot(cache, H, S::SN), slot(cache, H, S::SHR),
              slot(cache, H, S::Hout), a.data());
}

void check_session_start_mix(float mix) {
  require(mix >= 0.f && mix <= 1.f, "the session-start mix must be in [0, 1], got " + std::to_string(mix));
}

void session_start_state(const Params& P, float mix, const float* u, const float* h, float* out) {
  check_session_start_mix(mix);
  const int H = P.H;
  if (mix == 0.f) {
    if (out != h) std::memcpy(out, h, sizeof(float) * H);
    return;
  }
  const Dense& d = P.d;
  thread_local std::vector<float> a, buf;
  a.resize(3 * H);
  buf.resize(6 * H);
  float *r = buf.data(), *z = r + H, *n = z + H, *hr = n + H, *un = hr + H, *s = un + H;
  gru_forward({d.Wux.data(), d.Wuh.data(), d.bu.data()}, H, h, u, r, z, n, hr, un, a.data());
  std::memcpy(s, d.b0.data(), sizeof(float) * H);
  matvec_add(d.W0.data(), H, H, un, s);
  for (int k = 0; k < H; ++k) out[k] = (1.f - mix) * h[k] + mix * fast_tanh(s[k]);
}

}  // namespace hrnn
