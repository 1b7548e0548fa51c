#include "hrnn/step.h"

#include <algorithm>
#include <cstring>
#include <vector>

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

// Accumulates the gradients of out = GRU(x, h) given dout: into dWx, dWh, db, dx and dh.
// scratch: 4H floats.
void gru_backward(const GruRefs& w, int H, const float* x, const float* h, const float* r,
                  const float* z, const float* n, const float* hr, const float* dout, float* dWx,
                  float* dWh, float* db, float* dx, float* dh, float* scratch) {
  float* da = scratch;          // 3H
  float* dhr = scratch + 3 * H;  // H
  for (int k = 0; k < H; ++k) {
    const float dn = dout[k] * (1.f - z[k]);
    const float dz = dout[k] * (h[k] - n[k]);
    dh[k] += dout[k] * z[k];
    da[2 * H + k] = dn * (1.f - n[k] * n[k]);
    da[H + k] = dz * z[k] * (1.f - z[k]);
    dhr[k] = 0.f;
  }
  const float* Whn = w.Wh + 2 * static_cast<int64_t>(H) * H;
  matvec_t_add(Whn, H, H, da + 2 * H, dhr);
  for (int k = 0; k < H; ++k) {
    dh[k] += dhr[k] * r[k];
    da[k] = dhr[k] * h[k] * r[k] * (1.f - r[k]);
  }
  outer_add(dWh, 2 * H, H, da, h);
  outer_add(dWh + 2 * static_cast<int64_t>(H) * H, H, H, da + 2 * H, hr);
  for (int k = 0; k < 3 * H; ++k) db[k] += da[k];
  outer_add(dWx, 3 * H, H, da, x);
  matvec_t_add(w.Wx, 3 * H, H, da, dx);
  matvec_t_add(w.Wh, 2 * H, H, da, dh);
}

float* slot(float* cache, int H, StepCache::Slot s) { return cache + static_cast<int64_t>(s) * H; }
const float* slot(const float* cache, int H, StepCache::Slot s) {
  return cache + static_cast<int64_t>(s) * H;
}

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

void step_backward(const Params& P, const float* x, float gap, uint8_t flags, const float* cache,
                   float* dh, float* du, float* dx, Dense& gr, float* scratch) {
  using S = StepCache;
  const int H = P.H;
  const Dense& d = P.d;
  const bool fresh = flags & kFresh, new_session = flags & kNewSession;
  float* dhtil = scratch;         // H
  float* dhp = scratch + H;       // H: gradient w.r.t. h_prev
  float* ds = scratch + 2 * H;    // H
  float* dtmp = scratch + 3 * H;  // H
  float* gru_scratch = scratch + 4 * H;  // 4H

  const float* u = slot(cache, H, S::U);
  const float* s = slot(cache, H, S::S);
  const float* g = slot(cache, H, S::G);
  const float* htil = slot(cache, H, S::HTil);
  const float* u_prev = slot(cache, H, S::UPrev);
  const float* h_prev = slot(cache, H, S::HPrev);

  std::fill(dhtil, dhtil + H, 0.f);
  std::fill(dx, dx + H, 0.f);
  gru_backward({d.Wsx.data(), d.Wsh.data(), d.bs.data()}, H, x, htil, slot(cache, H, S::SR),
               slot(cache, H, S::SZ), slot(cache, H, S::SN), slot(cache, H, S::SHR), dh,
               gr.Wsx.data(), gr.Wsh.data(), gr.bs.data(), dx, dhtil, gru_scratch);

  if (fresh) {
    std::memcpy(ds, dhtil, sizeof(float) * H);
  } else {
    float phi[kTimeFeatures];
    time_features(gap, new_session, phi);
    float* dgpre = dtmp;
    for (int k = 0; k < H; ++k) {
      dgpre[k] = dhtil[k] * (h_prev[k] - s[k]) * g[k] * (1.f - g[k]);
      dhp[k] = dhtil[k] * g[k];
      ds[k] = dhtil[k] * (1.f - g[k]);
      gr.bg[k] += dgpre[k];
    }
    outer_add(gr.Wg.data(), H, H, dgpre, x);
    outer_add(gr.Vg.data(), H, kTimeFeatures, dgpre, phi);
    matvec_t_add(d.Wg.data(), H, H, dgpre, dx);
  }
  for (int k = 0; k < H; ++k) {
    ds[k] *= 1.f - s[k] * s[k];
    gr.b0[k] += ds[k];
  }
  outer_add(gr.W0.data(), H, H, ds, u);
  matvec_t_add(d.W0.data(), H, H, ds, du);  // du now: gradient w.r.t. this step's u

  if (fresh) {
    for (int k = 0; k < H; ++k) gr.u0[k] += du[k];
    std::fill(dh, dh + H, 0.f);
    std::fill(du, du + H, 0.f);
  } else if (new_session) {
    float* du_out = dtmp;
    std::memcpy(du_out, du, sizeof(float) * H);
    std::fill(du, du + H, 0.f);
    std::memcpy(dh, dhp, sizeof(float) * H);
    gru_backward({d.Wux.data(), d.Wuh.data(), d.bu.data()}, H, h_prev, u_prev, slot(cache, H, S::UR),
                 slot(cache, H, S::UZ), slot(cache, H, S::UN), slot(cache, H, S::UHR), du_out,
                 gr.Wux.data(), gr.Wuh.data(), gr.bu.data(), dh, du, gru_scratch);
  } else {
    std::memcpy(dh, dhp, sizeof(float) * H);
  }
}

}  // namespace hrnn
