#include "hrnn/lane_block.h"

#include <algorithm>
#include <cstring>

#include "hrnn/gemm.h"
#include "hrnn/kernels.h"
#include "hrnn/step.h"
#include "hrnn/window.h"

namespace hrnn {
namespace {

// dst gets nblk gate blocks of src ([nblk*H x H], row-major) with rows padded to Hp; transposed:
// dst[k, c0 + blk*Hp + j] = src[blk*H + j, k] (dst has ld columns); else dst[blk*Hp + j, k] = src[...].
void pack_blocks(const std::vector<float>& src, int nblk, int H, int Hp, float* dst, int ld, int c0,
                 bool transposed) {
  for (int blk = 0; blk < nblk; ++blk)
    for (int j = 0; j < H; ++j)
      for (int k = 0; k < H; ++k) {
        const float v = src[(static_cast<int64_t>(blk) * H + j) * H + k];
        if (transposed) dst[static_cast<int64_t>(k) * ld + c0 + blk * Hp + j] = v;
        else dst[(static_cast<int64_t>(blk) * Hp + j) * ld + c0 + k] = v;
      }
}

// dst [nblk*H x H] += the padded product src [nblk*Hp x Hp].
void add_blocks(const float* src, int nblk, int H, int Hp, float* dst) {
  for (int blk = 0; blk < nblk; ++blk)
    for (int j = 0; j < H; ++j)
      axpy(1.f, src + (static_cast<int64_t>(blk) * Hp + j) * Hp, dst + (static_cast<int64_t>(blk) * H + j) * H, H);
}

// dst[k] += sum over rows of m [rows x ld] of m[r, c0 + k], k < H.
void add_column_sums(const float* m, int64_t rows, int ld, int c0, int H, float* dst) {
  for (int64_t r = 0; r < rows; ++r) axpy(1.f, m + r * ld + c0, dst, H);
}

void grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n, 0.f);
}

}  // namespace

void PackedWeights::pack(const Dense& d, int H_) {
  H = H_;
  Hp = pad_to_gemm(H);
  const size_t h = H, hp = Hp;
  WxT.assign(h * 4 * hp, 0.f);
  WshT.assign(h * 3 * hp, 0.f);
  WuxT.assign(h * 3 * hp, 0.f);
  WuhT.assign(h * 3 * hp, 0.f);
  W0T.assign(h * hp, 0.f);
  Wx.assign(4 * hp * hp, 0.f);
  Wsh.assign(3 * hp * hp, 0.f);
  Wux.assign(3 * hp * hp, 0.f);
  Wuh.assign(3 * hp * hp, 0.f);
  W0.assign(hp * hp, 0.f);
  for (bool tr : {true, false}) {
    pack_blocks(d.Wsx, 3, H, Hp, tr ? WxT.data() : Wx.data(), tr ? 4 * Hp : Hp, 0, tr);
    pack_blocks(d.Wsh, 3, H, Hp, tr ? WshT.data() : Wsh.data(), tr ? 3 * Hp : Hp, 0, tr);
    pack_blocks(d.Wux, 3, H, Hp, tr ? WuxT.data() : Wux.data(), tr ? 3 * Hp : Hp, 0, tr);
    pack_blocks(d.Wuh, 3, H, Hp, tr ? WuhT.data() : Wuh.data(), tr ? 3 * Hp : Hp, 0, tr);
    pack_blocks(d.W0, 1, H, Hp, tr ? W0T.data() : W0.data(), Hp, 0, tr);
  }
  bias4.assign(4 * hp, 0.f);
  Vg0.assign(hp, 0.f);
  Vg1.assign(hp, 0.f);
  for (int blk = 0; blk < 3; ++blk) std::copy_n(d.bs.data() + blk * H, H, bias4.data() + blk * Hp);
  std::copy_n(d.bg.data(), H, bias4.data() + 3 * Hp);
  for (int k = 0; k < H; ++k) Vg0[k] = d.Vg[2 * k], Vg1[k] = d.Vg[2 * k + 1];
  pack_blocks(d.Wg, 1, H, Hp, WxT.data(), 4 * Hp, 3 * Hp, true);
  pack_blocks(d.Wg, 1, H, Hp, Wx.data() + 3 * hp * hp, Hp, 0, false);
}

void LaneBlock::allocate(int T, int b0, int b1, int H) {
  const int Hp = pad_to_gemm(H);
  if (Hp != Hp_) *this = LaneBlock();  // another model: the zero padding must be rebuilt
  T_ = T, b0_ = b0, nb_ = b1 - b0, H_ = H, Hp_ = Hp;
  const size_t rows = static_cast<size_t>(T) * nb_, m = rows * Hp, lanes = static_cast<size_t>(nb_) * Hp;
  for (auto* v : {&x_, &hprev_, &u_, &s_, &g_, &htil_, &sr_, &sz_, &sn_, &shr_, &hout_, &ds_, &dx_, &dhl_,
                  &uh_, &uu_, &ur_, &uz_, &un_, &uhr_})
    grow(*v, m);
  grow(xa_, 4 * m);
  grow(d4_, 4 * m);
  grow(dau_, 3 * m);
  grow(phi_, 2 * rows);
  for (auto* v : {&dhc_, &duc_, &t3_, &t4_}) grow(*v, lanes);
  grow(t1_, 3 * lanes);
  grow(t2_, 2 * lanes);
  grow(wtmp_, 4 * static_cast<size_t>(Hp) * Hp);
  ns_off_.assign(T + 1, 0);
  ns_lane_.resize(rows);
}

void LaneBlock::start(const Params& P, const PackedWeights& W, const Window& w) {
  const int H = H_, Hp = Hp_, B = w.B;
  for (int t = 0; t < T_; ++t)
    for (int b = b0_; b < b0_ + nb_; ++b) {
      const int32_t item = w.items[static_cast<int64_t>(t) * B + b];
      float* x = x_.data() + row(t, b) * Hp;
      if (item >= 0) std::memcpy(x, P.E.data() + static_cast<int64_t>(item) * H, sizeof(float) * H);
      else std::fill(x, x + H, 0.f);
    }
  gemm_nn(T_ * nb_, 4 * Hp, H, x_.data(), Hp, W.WxT.data(), 4 * Hp, xa_.data(), 4 * Hp, false);
  for (int64_t r = 0; r < static_cast<int64_t>(T_) * nb_; ++r)
    axpy(1.f, W.bias4.data(), xa_.data() + r * 4 * Hp, 4 * Hp);
  std::fill(dhl_.begin(), dhl_.begin() + static_cast<int64_t>(T_) * nb_ * Hp, 0.f);
  std::fill(dhc_.begin(), dhc_.end(), 0.f);
  std::fill(duc_.begin(), duc_.end(), 0.f);
}

void LaneBlock::forward(const Params& P, const PackedWeights& W, const Window& w, int t, const float** last_u,
                        const float** last_h) {
  const int H = H_, Hp = Hp_, B = w.B;
  const Dense& d = P.d;
  const int64_t r0 = row(t, b0_);
  int n = ns_off_[t];
  for (int j = 0; j < nb_; ++j) {
    const int b = b0_ + j;
    const int64_t i = static_cast<int64_t>(t) * B + b, r = r0 + j;
    float* u = u_.data() + r * Hp;
    if (w.items[i] < 0) {  // inactive: zeros, so that the block's products stay finite
      std::fill(u, u + H, 0.f);
      std::fill(htil_.data() + r * Hp, htil_.data() + r * Hp + H, 0.f);
      std::fill(shr_.data() + r * Hp, shr_.data() + r * Hp + H, 0.f);
      continue;
    }
    if (w.flags[i] & kFresh) {
      std::memcpy(u, d.u0.data(), sizeof(float) * H);
      continue;
    }
    std::memcpy(hprev_.data() + r * Hp, last_h[b], sizeof(float) * H);
    if (w.flags[i] & kNewSession) {
      ns_lane_[n] = j;
      std::memcpy(uh_.data() + static_cast<int64_t>(n) * Hp, last_h[b], sizeof(float) * H);
      std::memcpy(uu_.data() + static_cast<int64_t>(n) * Hp, last_u[b], sizeof(float) * H);
      ++n;
    } else {
      std::memcpy(u, last_u[b], sizeof(float) * H);
    }
  }
  ns_off_[t + 1] = n;
  user_forward(P, W, r0, ns_off_[t], n);

  float* s = s_.data() + r0 * Hp;
  gemm_nn(nb_, Hp, H, u_.data() + r0 * Hp, Hp, W.W0T.data(), Hp, s, Hp, false);
  for (int j = 0; j < nb_; ++j) {
    const int64_t i = static_cast<int64_t>(t) * B + b0_ + j, r = r0 + j;
    if (w.items[i] < 0) continue;
    float* sr = s_.data() + r * Hp;
    float* ht = htil_.data() + r * Hp;
    axpy(1.f, d.b0.data(), sr, H);
    tanh_inplace(sr, H);
    if (w.flags[i] & kFresh) {
      std::memcpy(ht, sr, sizeof(float) * H);
      continue;
    }
    float* phi = phi_.data() + 2 * r;
    time_features(w.gaps[i], w.flags[i] & kNewSession, phi);
    const float* xg = xa_.data() + r * 4 * Hp + 3 * Hp;
    const float* hp = hprev_.data() + r * Hp;
    float* g = g_.data() + r * Hp;
    const float p0 = phi[0], p1 = phi[1];
    for (int k = 0; k < H; ++k) g[k] = xg[k] + W.Vg0[k] * p0 + W.Vg1[k] * p1;
    sigmoid_inplace(g, H);
    for (int k = 0; k < H; ++k) ht[k] = g[k] * hp[k] + (1.f - g[k]) * sr[k];
  }

  // The session GRU.
  float* arz = t2_.data();
  float* an = t3_.data();
  gemm_nn(nb_, 2 * Hp, H, htil_.data() + r0 * Hp, Hp, W.WshT.data(), 3 * Hp, arz, 2 * Hp, false);
  for (int j = 0; j < nb_; ++j) {
    const int64_t r = r0 + j;
    if (w.items[static_cast<int64_t>(t) * B + b0_ + j] < 0) continue;
    const float* xa = xa_.data() + r * 4 * Hp;
    const float* a = arz + static_cast<int64_t>(j) * 2 * Hp;
    const float* ht = htil_.data() + r * Hp;
    float* sr = sr_.data() + r * Hp;
    float* sz = sz_.data() + r * Hp;
    float* shr = shr_.data() + r * Hp;
    for (int k = 0; k < H; ++k) sr[k] = xa[k] + a[k];
    for (int k = 0; k < H; ++k) sz[k] = xa[Hp + k] + a[Hp + k];
    sigmoid_inplace(sr, H);
    sigmoid_inplace(sz, H);
    for (int k = 0; k < H; ++k) shr[k] = sr[k] * ht[k];
  }
  gemm_nn(nb_, Hp, H, shr_.data() + r0 * Hp, Hp, W.WshT.data() + 2 * Hp, 3 * Hp, an, Hp, false);
  for (int j = 0; j < nb_; ++j) {
    const int b = b0_ + j;
    const int64_t r = r0 + j;
    if (w.items[static_cast<int64_t>(t) * B + b] < 0) continue;
    const float* xa = xa_.data() + r * 4 * Hp + 2 * Hp;
    const float* a = an + static_cast<int64_t>(j) * Hp;
    const float* ht = htil_.data() + r * Hp;
    const float* sz = sz_.data() + r * Hp;
    float* sn = sn_.data() + r * Hp;
    float* h = hout_.data() + r * Hp;
    for (int k = 0; k < H; ++k) sn[k] = xa[k] + a[k];
    tanh_inplace(sn, H);
    for (int k = 0; k < H; ++k) h[k] = (1.f - sz[k]) * sn[k] + sz[k] * ht[k];
    last_u[b] = u_.data() + r * Hp;
    last_h[b] = h;
  }
}

// The user GRU of the step's new-session lanes (entries n0 .. n1, rows from r0): input the finished
// session's state, state the user's.
void LaneBlock::user_forward(const Params& P, const PackedWeights& W, int64_t r0, int n0, int n1) {
  const int H = H_, Hp = Hp_, m = n1 - n0;
  if (m == 0) return;
  const Dense& d = P.d;
  const int64_t e0 = n0;
  float* a = t1_.data();   // [m x 3Hp]
  float* ah = t2_.data();  // [m x 2Hp], then [m x Hp]
  gemm_nn(m, 3 * Hp, H, uh_.data() + e0 * Hp, Hp, W.WuxT.data(), 3 * Hp, a, 3 * Hp, false);
  gemm_nn(m, 2 * Hp, H, uu_.data() + e0 * Hp, Hp, W.WuhT.data(), 3 * Hp, ah, 2 * Hp, false);
  for (int e = 0; e < m; ++e) {
    const float* ae = a + static_cast<int64_t>(e) * 3 * Hp;
    const float* he = ah + static_cast<int64_t>(e) * 2 * Hp;
    const int64_t o = (e0 + e) * Hp;
    float* ur = ur_.data() + o;
    float* uz = uz_.data() + o;
    for (int k = 0; k < H; ++k) ur[k] = ae[k] + d.bu[k] + he[k];
    for (int k = 0; k < H; ++k) uz[k] = ae[Hp + k] + d.bu[H + k] + he[Hp + k];
    sigmoid_inplace(ur, H);
    sigmoid_inplace(uz, H);
    for (int k = 0; k < H; ++k) uhr_[o + k] = ur[k] * uu_[o + k];
  }
  gemm_nn(m, Hp, H, uhr_.data() + e0 * Hp, Hp, W.WuhT.data() + 2 * Hp, 3 * Hp, ah, Hp, false);
  for (int e = 0; e < m; ++e) {
    const float* ae = a + static_cast<int64_t>(e) * 3 * Hp + 2 * Hp;
    const float* he = ah + static_cast<int64_t>(e) * Hp;
    const int64_t o = (e0 + e) * Hp;
    float* u = u_.data() + (r0 + ns_lane_[e0 + e]) * Hp;
    float* un = un_.data() + o;
    for (int k = 0; k < H; ++k) un[k] = ae[k] + d.bu[2 * H + k] + he[k];
    tanh_inplace(un, H);
    for (int k = 0; k < H; ++k) u[k] = (1.f - uz_[o + k]) * un[k] + uz_[o + k] * uu_[o + k];
  }
}

void LaneBlock::backward(const PackedWeights& W, const Window& w, int t, Dense& gd) {
  const int H = H_, Hp = Hp_, B = w.B;
  const int64_t r0 = row(t, b0_);
  float* dht = t3_.data();  // gradient w.r.t. h~, per lane
  float* tmp = t4_.data();  // w.r.t. the session GRU's r * h~, then w.r.t. h_prev through the gate
  float* d4 = d4_.data() + r0 * 4 * Hp;
  auto active = [&](int j) { return w.items[static_cast<int64_t>(t) * B + b0_ + j] >= 0; };

  // The session GRU: h = (1 - z) n + z h~, n = tanh(.. + Wsh_n (r * h~)).
  for (int j = 0; j < nb_; ++j) {
    const int64_t r = r0 + j;
    float* dr = d4 + static_cast<int64_t>(j) * 4 * Hp;
    if (!active(j)) {
      for (int blk = 0; blk < 4; ++blk) std::fill(dr + blk * Hp, dr + blk * Hp + H, 0.f);
      std::fill(ds_.data() + r * Hp, ds_.data() + r * Hp + H, 0.f);
      continue;
    }
    float* dh = dhc_.data() + static_cast<int64_t>(j) * Hp;
    axpy(1.f, dhl_.data() + r * Hp, dh, H);
    const float* z = sz_.data() + r * Hp;
    const float* n = sn_.data() + r * Hp;
    const float* ht = htil_.data() + r * Hp;
    float* dhtj = dht + static_cast<int64_t>(j) * Hp;
    for (int k = 0; k < H; ++k) {
      dr[2 * Hp + k] = dh[k] * (1.f - z[k]) * (1.f - n[k] * n[k]);
      dr[Hp + k] = dh[k] * (ht[k] - n[k]) * z[k] * (1.f - z[k]);
      dhtj[k] = dh[k] * z[k];
    }
  }
  gemm_nn(nb_, Hp, H, d4 + 2 * Hp, 4 * Hp, W.Wsh.data() + 2 * static_cast<int64_t>(Hp) * Hp, Hp, tmp, Hp, false);
  for (int j = 0; j < nb_; ++j) {
    if (!active(j)) continue;
    const int64_t r = r0 + j;
    const float* sr = sr_.data() + r * Hp;
    const float* ht = htil_.data() + r * Hp;
    const float* dhr = tmp + static_cast<int64_t>(j) * Hp;
    float* dr = d4 + static_cast<int64_t>(j) * 4 * Hp;
    float* dhtj = dht + static_cast<int64_t>(j) * Hp;
    for (int k = 0; k < H; ++k) {
      dr[k] = dhr[k] * ht[k] * sr[k] * (1.f - sr[k]);
      dhtj[k] += dhr[k] * sr[k];
    }
  }
  gemm_nn(nb_, Hp, 2 * Hp, d4, 4 * Hp, W.Wsh.data(), Hp, dht, Hp, true);

  // The gate h~ = g h_prev + (1 - g) s (fresh lanes: h~ = s), and s = tanh(W0 u + b0).
  for (int j = 0; j < nb_; ++j) {
    if (!active(j)) continue;
    const int64_t r = r0 + j, i = static_cast<int64_t>(t) * B + b0_ + j;
    const float* s = s_.data() + r * Hp;
    const float* dhtj = dht + static_cast<int64_t>(j) * Hp;
    float* ds = ds_.data() + r * Hp;
    float* dg = d4 + static_cast<int64_t>(j) * 4 * Hp + 3 * Hp;
    if (w.flags[i] & kFresh) {
      for (int k = 0; k < H; ++k) ds[k] = dhtj[k] * (1.f - s[k] * s[k]);
      std::fill(dg, dg + H, 0.f);
      continue;
    }
    const float* g = g_.data() + r * Hp;
    const float* hp = hprev_.data() + r * Hp;
    float* dhp = tmp + static_cast<int64_t>(j) * Hp;
    for (int k = 0; k < H; ++k) {
      dg[k] = dhtj[k] * (hp[k] - s[k]) * g[k] * (1.f - g[k]);
      dhp[k] = dhtj[k] * g[k];
      ds[k] = dhtj[k] * (1.f - g[k]) * (1.f - s[k] * s[k]);
    }
  }
  float* du_s = t1_.data();  // [nb x Hp]: gradient w.r.t. u through s
  gemm_nn(nb_, Hp, H, ds_.data() + r0 * Hp, Hp, W.W0.data(), Hp, du_s, Hp, false);
  float* du_out = t2_.data();  // [m x Hp]: the new-session lanes' gradient w.r.t. their new u
  int e = ns_off_[t];
  for (int j = 0; j < nb_; ++j) {
    if (!active(j)) continue;
    const int64_t i = static_cast<int64_t>(t) * B + b0_ + j;
    float* dh = dhc_.data() + static_cast<int64_t>(j) * Hp;
    float* du = duc_.data() + static_cast<int64_t>(j) * Hp;
    axpy(1.f, du_s + static_cast<int64_t>(j) * Hp, du, H);
    if (w.flags[i] & kFresh) {
      axpy(1.f, du, gd.u0.data(), H);
      std::fill(dh, dh + H, 0.f);
      std::fill(du, du + H, 0.f);
    } else if (w.flags[i] & kNewSession) {
      std::memcpy(du_out + static_cast<int64_t>(e - ns_off_[t]) * Hp, du, sizeof(float) * H);
      ++e;
    } else {
      std::memcpy(dh, tmp + static_cast<int64_t>(j) * Hp, sizeof(float) * H);
    }
  }
  user_backward(W, ns_off_[t], ns_off_[t + 1]);
}

// The user GRU's backward for entries n0 .. n1 of the step, given their output gradients in t2_:
// sets the lanes' carries to the gradients w.r.t. (h_prev, u_prev); h_prev's gate part is in t4_.
void LaneBlock::user_backward(const PackedWeights& W, int n0, int n1) {
  const int H = H_, Hp = Hp_, m = n1 - n0;
  if (m == 0) return;
  const int64_t e0 = n0;
  const float* dout = t2_.data();
  float* dun = t2_.data() + static_cast<int64_t>(nb_) * Hp;  // w.r.t. u_prev
  float* dhr = t1_.data();                                   // w.r.t. r * u_prev, then w.r.t. h_prev
  float* dau = dau_.data() + e0 * 3 * Hp;
  for (int e = 0; e < m; ++e) {
    const int64_t o = (e0 + e) * Hp;
    const float* de = dout + static_cast<int64_t>(e) * Hp;
    float* da = dau + static_cast<int64_t>(e) * 3 * Hp;
    float* dn = dun + static_cast<int64_t>(e) * Hp;
    for (int k = 0; k < H; ++k) {
      const float z = uz_[o + k], n = un_[o + k];
      da[2 * Hp + k] = de[k] * (1.f - z) * (1.f - n * n);
      da[Hp + k] = de[k] * (uu_[o + k] - n) * z * (1.f - z);
      dn[k] = de[k] * z;
    }
  }
  gemm_nn(m, Hp, H, dau + 2 * Hp, 3 * Hp, W.Wuh.data() + 2 * static_cast<int64_t>(Hp) * Hp, Hp, dhr, Hp, false);
  for (int e = 0; e < m; ++e) {
    const int64_t o = (e0 + e) * Hp;
    const float* dr = dhr + static_cast<int64_t>(e) * Hp;
    float* da = dau + static_cast<int64_t>(e) * 3 * Hp;
    float* dn = dun + static_cast<int64_t>(e) * Hp;
    for (int k = 0; k < H; ++k) {
      const float r = ur_[o + k];
      da[k] = dr[k] * uu_[o + k] * r * (1.f - r);
      dn[k] += dr[k] * r;
    }
  }
  gemm_nn(m, Hp, 2 * Hp, dau, 3 * Hp, W.Wuh.data(), Hp, dun, Hp, true);
  gemm_nn(m, Hp, 3 * Hp, dau, 3 * Hp, W.Wux.data(), Hp, dhr, Hp, false);
  for (int e = 0; e < m; ++e) {
    const int j = ns_lane_[e0 + e];
    float* dh = dhc_.data() + static_cast<int64_t>(j) * Hp;
    std::memcpy(dh, t4_.data() + static_cast<int64_t>(j) * Hp, sizeof(float) * H);
    axpy(1.f, dhr + static_cast<int64_t>(e) * Hp, dh, H);
    std::memcpy(duc_.data() + static_cast<int64_t>(j) * Hp, dun + static_cast<int64_t>(e) * Hp, sizeof(float) * H);
  }
}

void LaneBlock::finish(const PackedWeights& W, Dense& gd) {
  const int H = H_, Hp = Hp_;
  const int rows = T_ * nb_, n = ns_off_[T_];
  float* wt = wtmp_.data();
  const float* d4 = d4_.data();
  const int64_t p2 = static_cast<int64_t>(Hp) * Hp;
  gemm_tn(4 * Hp, Hp, rows, d4, 4 * Hp, x_.data(), Hp, wt, Hp, false);
  add_blocks(wt, 3, H, Hp, gd.Wsx.data());
  add_blocks(wt + 3 * p2, 1, H, Hp, gd.Wg.data());
  gemm_tn(2 * Hp, Hp, rows, d4, 4 * Hp, htil_.data(), Hp, wt, Hp, false);
  gemm_tn(Hp, Hp, rows, d4 + 2 * Hp, 4 * Hp, shr_.data(), Hp, wt + 2 * p2, Hp, false);
  add_blocks(wt, 3, H, Hp, gd.Wsh.data());
  for (int blk = 0; blk < 3; ++blk) add_column_sums(d4, rows, 4 * Hp, blk * Hp, H, gd.bs.data() + blk * H);
  add_column_sums(d4, rows, 4 * Hp, 3 * Hp, H, gd.bg.data());
  for (int r = 0; r < rows; ++r) {
    const float* dg = d4 + static_cast<int64_t>(r) * 4 * Hp + 3 * Hp;
    const float* phi = phi_.data() + 2 * static_cast<int64_t>(r);
    for (int k = 0; k < H; ++k) {
      gd.Vg[2 * k] += dg[k] * phi[0];
      gd.Vg[2 * k + 1] += dg[k] * phi[1];
    }
  }
  gemm_tn(Hp, Hp, rows, ds_.data(), Hp, u_.data(), Hp, wt, Hp, false);
  add_blocks(wt, 1, H, Hp, gd.W0.data());
  add_column_sums(ds_.data(), rows, Hp, 0, H, gd.b0.data());
  gemm_nn(rows, Hp, 4 * Hp, d4, 4 * Hp, W.Wx.data(), Hp, dx_.data(), Hp, false);
  if (n == 0) return;
  gemm_tn(3 * Hp, Hp, n, dau_.data(), 3 * Hp, uh_.data(), Hp, wt, Hp, false);
  add_blocks(wt, 3, H, Hp, gd.Wux.data());
  gemm_tn(2 * Hp, Hp, n, dau_.data(), 3 * Hp, uu_.data(), Hp, wt, Hp, false);
  gemm_tn(Hp, Hp, n, dau_.data() + 2 * Hp, 3 * Hp, uhr_.data(), Hp, wt + 2 * p2, Hp, false);
  add_blocks(wt, 3, H, Hp, gd.Wuh.data());
  for (int blk = 0; blk < 3; ++blk) add_column_sums(dau_.data(), n, 3 * Hp, blk * Hp, H, gd.bu.data() + blk * H);
}

}  // namespace hrnn
