#include "hrnn/rng.h"
#include "hrnn/step.h"
#include "recurrent_kernels.cuh"

namespace hrnn::cuda {
namespace {

constexpr int kThreads = 256;

__device__ inline float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

// One thread per (lane, unit) of a step: b, k, and the row t*B + b.
struct LaneUnit {
  int b, k;
  int64_t tb;
  __device__ LaneUnit(const WindowBuffers& w, int t, int64_t idx)
      : b(static_cast<int>(idx / w.H)), k(static_cast<int>(idx % w.H)), tb(static_cast<int64_t>(t) * w.B + b) {}
  __device__ int64_t at(int H) const { return tb * H + k; }      // in a [T*B x H] array
  __device__ int64_t lane(int H) const { return static_cast<int64_t>(b) * H + k; }  // in a [B x H] array
};

#define HRNN_FOR_LANE_UNITS(w)                                                       \
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; \
  if (idx >= static_cast<int64_t>((w).B) * (w).H) return;                          \
  const LaneUnit q((w), t, idx);                                                   \
  const int H = (w).H;

__global__ void fwd_gather_kernel(WindowBuffers w, WindowView v, const float* __restrict__ E, int t) {
  HRNN_FOR_LANE_UNITS(w)
  const int32_t item = v.items[q.tb];
  w.X[q.at(H)] = item >= 0 ? E[static_cast<int64_t>(item) * H + q.k] : 0.f;
  w.UPREV[q.at(H)] = w.UCUR[q.lane(H)];
  w.HPREV[q.at(H)] = w.HCUR[q.lane(H)];
  if (q.k == 0) {
    const float gap = v.gaps[q.tb];
    w.PHI[2 * q.tb] = log1pf((gap > 0.f ? gap : 0.f) / 60.f);
    w.PHI[2 * q.tb + 1] = (v.flags[q.tb] & kNewSession) ? 1.f : 0.f;
  }
}

__global__ void fwd_gru_gates_kernel(WindowBuffers w, const float* __restrict__ A, const float* __restrict__ h,
                                     float* r, float* z, float* hr, int t) {
  HRNN_FOR_LANE_UNITS(w)
  const float* a = A + static_cast<int64_t>(q.b) * 3 * H;
  const float rv = sigmoid(a[q.k]);
  r[q.at(H)] = rv;
  z[q.at(H)] = sigmoid(a[H + q.k]);
  hr[q.at(H)] = rv * h[q.at(H)];
}

__global__ void fwd_user_out_kernel(WindowBuffers w, WindowView v, const float* __restrict__ u0, int t) {
  HRNN_FOR_LANE_UNITS(w)
  const float n = tanhf(w.A_U[static_cast<int64_t>(q.b) * 3 * H + 2 * H + q.k]);
  const float z = w.UZ[q.at(H)], up = w.UPREV[q.at(H)];
  w.UN[q.at(H)] = n;
  const uint8_t f = v.flags[q.tb];
  w.U[q.at(H)] = (f & kFresh) ? u0[q.k] : (f & kNewSession) ? (1.f - z) * n + z * up : up;
}

__global__ void fwd_gate_kernel(WindowBuffers w, WindowView v, const float* __restrict__ Vg, int t) {
  HRNN_FOR_LANE_UNITS(w)
  const float s = tanhf(w.SU[q.at(H)]);
  w.SU[q.at(H)] = s;
  if (v.flags[q.tb] & kFresh) {
    w.G[q.at(H)] = 0.f;
    w.HTIL[q.at(H)] = s;
  } else {
    const float g = sigmoid(w.G[q.at(H)] + Vg[2 * q.k] * w.PHI[2 * q.tb] + Vg[2 * q.k + 1] * w.PHI[2 * q.tb + 1]);
    w.G[q.at(H)] = g;
    w.HTIL[q.at(H)] = g * w.HPREV[q.at(H)] + (1.f - g) * s;
  }
}

__global__ void fwd_dropout_mask_kernel(WindowBuffers w, WindowView v, uint64_t seed, float keep, int t) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= w.B) return;
  const int64_t tb = static_cast<int64_t>(t) * w.B + b;
  if (v.items[tb] < 0 || v.targets[tb] < 0) return;
  Rng rng(seed, t + 1, b + 1);  // the CPU engine's stream for (window, t, b)
  float* mask = w.MASK + static_cast<int64_t>(b) * w.H;
  for (int k = 0; k < w.H; ++k) mask[k] = rng.uniformf() < keep ? 1.f / keep : 0.f;
}

__global__ void fwd_session_out_kernel(WindowBuffers w, WindowView v, bool dropout, int t) {
  HRNN_FOR_LANE_UNITS(w)
  const float n = tanhf(w.A_S[static_cast<int64_t>(q.b) * 3 * H + 2 * H + q.k]);
  const float z = w.SZ[q.at(H)];
  const float h = (1.f - z) * n + z * w.HTIL[q.at(H)];
  w.SN[q.at(H)] = n;
  w.HNEW[q.at(H)] = h;
  const bool active = v.items[q.tb] >= 0;
  if (active) {
    w.UCUR[q.lane(H)] = w.U[q.at(H)];
    w.HCUR[q.lane(H)] = h;
  }
  const bool target = active && v.targets[q.tb] >= 0;
  w.HOUT[q.at(H)] = target ? (dropout ? h * w.MASK[q.lane(H)] : h) : 0.f;
  if (w.REC_U) {
    w.REC_U[q.at(H)] = w.UCUR[q.lane(H)];
    w.REC_H[q.at(H)] = w.HCUR[q.lane(H)];
  }
}

// Backward. Rows of inactive lanes stay zero in every per-(t, b) gradient array (zeroed per window),
// so that the matrix products over all lanes add nothing for them; their carries are untouched.

// The session GRU's output: dh = carry + loss part; DHT = dh * z, the n and z parts of DA_S.
__global__ void bwd_session_out_kernel(WindowBuffers w, WindowView v, int t) {
  HRNN_FOR_LANE_UNITS(w)
  if (v.items[q.tb] < 0) return;
  const float dh = w.DHC[q.lane(H)] + w.DHLOSS[q.at(H)];
  const float z = w.SZ[q.at(H)], n = w.SN[q.at(H)], htil = w.HTIL[q.at(H)];
  w.DHT[q.lane(H)] = dh * z;
  float* da = w.DA_S + q.tb * 3 * H;
  da[H + q.k] = dh * (htil - n) * z * (1.f - z);
  da[2 * H + q.k] = dh * (1.f - z) * (1.f - n * n);
}

// After DHR = da_n . Wsh_n: the reset gate's part.
__global__ void bwd_session_reset_kernel(WindowBuffers w, WindowView v, int t) {
  HRNN_FOR_LANE_UNITS(w)
  if (v.items[q.tb] < 0) return;
  const float dhr = w.DHR[q.lane(H)], r = w.SR[q.at(H)];
  w.DHT[q.lane(H)] += dhr * r;
  w.DA_S[q.tb * 3 * H + q.k] = dhr * w.HTIL[q.at(H)] * r * (1.f - r);
}

// After DHT += da . Wsh[0:2H]: the gate and the user proposal s.
__global__ void bwd_gate_kernel(WindowBuffers w, WindowView v, int t) {
  HRNN_FOR_LANE_UNITS(w)
  if (v.items[q.tb] < 0) return;
  const float dhtil = w.DHT[q.lane(H)], s = w.SU[q.at(H)];
  float ds = dhtil, dgpre = 0.f, dhp = 0.f;
  if (!(v.flags[q.tb] & kFresh)) {
    const float g = w.G[q.at(H)];
    dgpre = dhtil * (w.HPREV[q.at(H)] - s) * g * (1.f - g);
    dhp = dhtil * g;
    ds = dhtil * (1.f - g);
  }
  w.DGPRE[q.at(H)] = dgpre;
  w.DS[q.at(H)] = ds * (1.f - s * s);
  w.DHP[q.lane(H)] = dhp;
}

// After DUO = DS . W0: the user state's gradient, and the user GRU's output part.
__global__ void bwd_user_out_kernel(WindowBuffers w, WindowView v, int t) {
  HRNN_FOR_LANE_UNITS(w)
  if (v.items[q.tb] < 0) return;
  const float du = w.DUC[q.lane(H)] + w.DUO[q.lane(H)];
  const uint8_t f = v.flags[q.tb];
  if (f & kFresh) {
    w.DU0[q.at(H)] = du;
    w.DHC[q.lane(H)] = 0.f;
    w.DUC[q.lane(H)] = 0.f;
  } else if (f & kNewSession) {
    const float z = w.UZ[q.at(H)], n = w.UN[q.at(H)];
    float* da = w.DA_U + q.tb * 3 * H;
    da[H + q.k] = du * (w.UPREV[q.at(H)] - n) * z * (1.f - z);
    da[2 * H + q.k] = du * (1.f - z) * (1.f - n * n);
    w.DUC[q.lane(H)] = du * z;
    w.DHC[q.lane(H)] = w.DHP[q.lane(H)];
  } else {
    w.DUC[q.lane(H)] = du;
    w.DHC[q.lane(H)] = w.DHP[q.lane(H)];
  }
}

// After DHR = da_n . Wuh_n: the user GRU's reset gate part (lanes that started a session).
__global__ void bwd_user_reset_kernel(WindowBuffers w, WindowView v, int t) {
  HRNN_FOR_LANE_UNITS(w)
  const uint8_t f = v.flags[q.tb];
  if (v.items[q.tb] < 0 || (f & kFresh) || !(f & kNewSession)) return;
  const float dhr = w.DHR[q.lane(H)], r = w.UR[q.at(H)];
  w.DUC[q.lane(H)] += dhr * r;
  w.DA_U[q.tb * 3 * H + q.k] = dhr * w.UPREV[q.at(H)] * r * (1.f - r);
}

__global__ void bwd_scatter_inputs_kernel(WindowBuffers w, WindowView v, float* gE, int t) {
  HRNN_FOR_LANE_UNITS(w)
  const int32_t slot = v.in_slot[q.tb];
  if (slot >= 0) atomicAdd(gE + static_cast<int64_t>(slot) * H + q.k, w.DX[q.at(H)]);
}

unsigned lane_unit_blocks(const WindowBuffers& w) { return blocks_for(static_cast<int64_t>(w.B) * w.H, kThreads); }

}  // namespace

void fwd_gather(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const float* E, int t) {
  fwd_gather_kernel<<<lane_unit_blocks(w), kThreads, 0, s>>>(w, v, E, t);
  check_launch("fwd_gather_kernel");
}

void fwd_gru_gates(cudaStream_t s, const WindowBuffers& w, const float* A, const float* h, float* r, float* z,
                   float* hr, int t) {
  fwd_gru_gates_kernel<<<lane_unit_blocks(w), kThreads, 0, s>>>(w, A, h, r, z, hr, t);
  check_launch("fwd_gru_gates_kernel");
}

void fwd_user_out(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const float* u0, int t) {
  fwd_user_out_kernel<<<lane_unit_blocks(w), kThreads, 0, s>>>(w, v, u0, t);
  check_launch("fwd_user_out_kernel");
}

void fwd_gate(cudaStream_t s, const WindowBuffers& w, const WindowView& v, const float* Vg, int t) {
  fwd_gate_kernel<<<lane_unit_blocks(w), kThreads, 0, s>>>(w, v, Vg, t);
  check_launch("fwd_gate_kernel");
}

void fwd_dropout_mask(cudaStream_t s, const WindowBuffers& w, const WindowView& v, uint64_t seed, float keep, int t) {
  fwd_dropout_mask_kernel<<<blocks_for(w.B, kThreads), kThreads, 0, s>>>(w, v, seed, keep, t);
  check_launch("fwd_dropout_mask_kernel");
}

void fwd_session_out(cudaStream_t s, const WindowBuffers& w, const WindowView& v, bool dropout, int t) {
  fwd_session_out_kernel<<<lane_unit_blocks(w), kThreads, 0, s>>>(w, v, dropout, t);
  check_launch("fwd_session_out_kernel");
}

void bwd_session_out(cudaStream_t s, const WindowBuffers& w, const WindowView& v, int t) {
  bwd_session_out_kernel<<<lane_unit_blocks(w), kThreads, 0, s>>>(w, v, t);
  check_launch("bwd_session_out_kernel");
}

void bwd_session_reset(cudaStream_t s, const WindowBuffers& w, const WindowView& v, int t) {
  bwd_session_reset_kernel<<<lane_unit_blocks(w), kThreads, 0, s>>>(w, v, t);
  check_launch("bwd_session_reset_kernel");
}

void bwd_gate(cudaStream_t s, const WindowBuffers& w, const WindowView& v, int t) {
  bwd_gate_kernel<<<lane_unit_blocks(w), kThreads, 0, s>>>(w, v, t);
  check_launch("bwd_gate_kernel");
}

void bwd_user_out(cudaStream_t s, const WindowBuffers& w, const WindowView& v, int t) {
  bwd_user_out_kernel<<<lane_unit_blocks(w), kThreads, 0, s>>>(w, v, t);
  check_launch("bwd_user_out_kernel");
}

void bwd_user_reset(cudaStream_t s, const WindowBuffers& w, const WindowView& v, int t) {
  bwd_user_reset_kernel<<<lane_unit_blocks(w), kThreads, 0, s>>>(w, v, t);
  check_launch("bwd_user_reset_kernel");
}

void bwd_scatter_inputs(cudaStream_t s, const WindowBuffers& w, const WindowView& v, float* gE, int t) {
  bwd_scatter_inputs_kernel<<<lane_unit_blocks(w), kThreads, 0, s>>>(w, v, gE, t);
  check_launch("bwd_scatter_inputs_kernel");
}

}  // namespace hrnn::cuda
