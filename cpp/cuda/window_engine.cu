#include <stdexcept>
#include <string>

#include "gemm.cuh"
#include "output_kernels.cuh"
#include "recurrent_kernels.cuh"
#include "window_engine.cuh"

namespace hrnn::cuda {

void DeviceWindowEngine::allocate(int T, int B, int C, int H, int64_t n_ext, bool record) {
  const int64_t TB = static_cast<int64_t>(T) * B, tbh = TB * H, bh = static_cast<int64_t>(B) * H;
  b_.T = T, b_.B = B, b_.S = C - B, b_.C = C, b_.H = H, b_.TB = TB;
  // Layout: first what is cleared for every window, then the rest.
  struct Slot {
    float** ptr;
    int64_t n;
  };
  const Slot zeroed[] = {{&b_.DHLOSS, tbh}, {&b_.DGPRE, tbh}, {&b_.DS, tbh},  {&b_.DU0, tbh},
                         {&b_.DA_S, 3 * tbh}, {&b_.DA_U, 3 * tbh}, {&b_.GHV, TB * kRepeatWidth},
                         {&b_.LOSS, TB},      {&b_.DHC, bh},       {&b_.DUC, bh}};
  const Slot rest[] = {{&b_.X, tbh},    {&b_.UPREV, tbh}, {&b_.HPREV, tbh}, {&b_.UR, tbh},   {&b_.UZ, tbh},
                       {&b_.UN, tbh},   {&b_.UHR, tbh},   {&b_.U, tbh},     {&b_.SU, tbh},   {&b_.G, tbh},
                       {&b_.HTIL, tbh}, {&b_.SR, tbh},    {&b_.SZ, tbh},    {&b_.SN, tbh},   {&b_.SHR, tbh},
                       {&b_.HNEW, tbh}, {&b_.HOUT, tbh},  {&b_.DX, tbh},    {&b_.PHI, 2 * TB},
                       {&b_.A_U, 3 * bh}, {&b_.A_S, 3 * bh}, {&b_.UCUR, bh}, {&b_.HCUR, bh}, {&b_.DHT, bh},
                       {&b_.DHR, bh},   {&b_.DHP, bh},    {&b_.DUO, bh},    {&b_.MASK, bh},
                       {&b_.OC, static_cast<int64_t>(C) * H}, {&b_.CB, C}, {&b_.CLQ, C},
                       {&b_.R, static_cast<int64_t>(B) * C}, {&b_.HV, static_cast<int64_t>(B) * kRepeatWidth},
                       {&b_.EXT_S, n_ext}, {&b_.EXT_G, n_ext},
                       {&b_.REC_U, record ? tbh : 0}, {&b_.REC_H, record ? tbh : 0}};
  auto aligned = [](int64_t n) { return (n + 63) / 64 * 64; };  // 256-byte aligned starts
  int64_t total = 0, zeroed_total = 0;
  for (const Slot& s : zeroed) zeroed_total += aligned(s.n);
  total = zeroed_total;
  for (const Slot& s : rest) total += aligned(s.n);
  float* base = arena_.reserve(static_cast<size_t>(total));
  int64_t at = 0;
  for (const Slot& s : zeroed) *s.ptr = base + at, at += aligned(s.n);
  for (const Slot& s : rest) *s.ptr = s.n ? base + at : nullptr, at += aligned(s.n);
  zeroed_ = base;
  zeroed_floats_ = static_cast<size_t>(zeroed_total);
}

void DeviceWindowEngine::enqueue(const DeviceModel& m, const float* logq, const Window& w, const WindowConfig& cfg,
                                 bool record, cudaStream_t s, const float* u0, const float* h0) {
  const int H = m.H;
  if (w.u_init.size() != static_cast<size_t>(w.B) * H || w.h_init.size() != w.u_init.size())
    throw std::invalid_argument("window initial states do not match the hidden dimension");
  if (!(cfg.dropout >= 0.f && cfg.dropout < 1.f)) throw std::invalid_argument("dropout must be in [0, 1)");
  if (m.layout.rd != m.layout.rc + 8) throw std::logic_error("rc and rd must be adjacent in the dense layout");
  data_.upload(w, m.N, s);
  const WindowView& v = data_.d;
  allocate(w.T, w.B, w.B + w.S, H, data_.n_ext, record);
  check(cudaMemsetAsync(zeroed_, 0, zeroed_floats_ * sizeof(float), s), "cudaMemsetAsync (window)");
  g_dense_.zero(static_cast<size_t>(m.layout.total), s);
  const size_t rows = static_cast<size_t>(data_.n_rows);
  g_E_.zero(rows * H, s);
  if (!m.tied) g_O_.zero(rows * H, s);
  g_bo_.zero(rows, s);
  const size_t bh = static_cast<size_t>(w.B) * H;
  check(cudaMemcpyAsync(b_.UCUR, u0 ? u0 : v.u_init, bh * sizeof(float), cudaMemcpyDeviceToDevice, s),
        "cudaMemcpyAsync (u_init)");
  check(cudaMemcpyAsync(b_.HCUR, h0 ? h0 : v.h_init, bh * sizeof(float), cudaMemcpyDeviceToDevice, s),
        "cudaMemcpyAsync (h_init)");
  scale_base_ = data_.n_targets > 0 ? 1.f / static_cast<float>(data_.n_targets) : 0.f;

  for (int t = 0; t < w.T; ++t) forward_step(m, logq, cfg, t, s);
  for (int t = w.T - 1; t >= 0; --t)
    if (data_.step_active[t] > 0) backward_step(m, t, s);
  dense_gradients(m, s);
}

WindowResult DeviceWindowEngine::run(const DeviceModel& m, const float* logq, const Window& w, const WindowConfig& cfg,
                                     bool record, cudaStream_t s) {
  enqueue(m, logq, w, cfg, record, s);
  std::vector<float> loss(static_cast<size_t>(b_.TB));
  copy_losses(loss.data(), s);
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize (window)");
  return {sum_losses(loss.data(), b_.TB), data_.n_targets};
}

double sum_losses(const float* loss, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += loss[i];
  return sum;
}

void DeviceWindowEngine::copy_losses(float* host, cudaStream_t s) const {
  check(cudaMemcpyAsync(host, b_.LOSS, static_cast<size_t>(b_.TB) * sizeof(float), cudaMemcpyDeviceToHost, s),
        "cudaMemcpyAsync (losses)");
}

void DeviceWindowEngine::forward_step(const DeviceModel& m, const float* logq, const WindowConfig& cfg, int t,
                                      cudaStream_t s) {
  const WindowView& v = data_.d;
  const DenseRefs d = m.refs();
  const int H = m.H, B = b_.B, C = b_.C, H2 = 2 * H, H3 = 3 * H;
  const int64_t off = static_cast<int64_t>(t) * B * H;
  const int64_t HH = static_cast<int64_t>(H) * H;
  Epilogue acc;
  acc.accumulate = true;
  auto bias = [](const float* b) {
    Epilogue e;
    e.col_bias = b;
    return e;
  };
  fwd_gather(s, b_, v, m.E.get(), t);
  // The user GRU over (input h_prev, state u_prev), for every lane (used where a session starts).
  gemm(s, Op::N, Op::T, B, H3, H, b_.HPREV + off, H, d.Wux, H, b_.A_U, H3, bias(d.bu));
  gemm(s, Op::N, Op::T, B, H2, H, b_.UPREV + off, H, d.Wuh, H, b_.A_U, H3, acc);
  fwd_gru_gates(s, b_, b_.A_U, b_.UPREV, b_.UR, b_.UZ, b_.UHR, t);
  gemm(s, Op::N, Op::T, B, H, H, b_.UHR + off, H, d.Wuh + 2 * HH, H, b_.A_U + H2, H3, acc);
  fwd_user_out(s, b_, v, d.u0, t);
  // The proposal s = tanh(W0 u + b0), the gate, h~.
  gemm(s, Op::N, Op::T, B, H, H, b_.U + off, H, d.W0, H, b_.SU + off, H, bias(d.b0));
  gemm(s, Op::N, Op::T, B, H, H, b_.X + off, H, d.Wg, H, b_.G + off, H, bias(d.bg));
  fwd_gate(s, b_, v, d.Vg, t);
  // The session GRU over (input x, state h~).
  gemm(s, Op::N, Op::T, B, H3, H, b_.X + off, H, d.Wsx, H, b_.A_S, H3, bias(d.bs));
  gemm(s, Op::N, Op::T, B, H2, H, b_.HTIL + off, H, d.Wsh, H, b_.A_S, H3, acc);
  fwd_gru_gates(s, b_, b_.A_S, b_.HTIL, b_.SR, b_.SZ, b_.SHR, t);
  gemm(s, Op::N, Op::T, B, H, H, b_.SHR + off, H, d.Wsh + 2 * HH, H, b_.A_S + H2, H3, acc);
  const bool dropout = cfg.dropout > 0.f;
  if (dropout && data_.step_targets[t] > 0) fwd_dropout_mask(s, b_, v, cfg.dropout_seed, 1.f - cfg.dropout, t);
  fwd_session_out(s, b_, v, dropout, t);
  if (data_.step_targets[t] == 0) return;

  // The output layer of the step, and its gradients (the state's gradient is used backwards).
  const OutputRefs p{m.out_rows(), m.bo.get(), d.rc, d.rd, d.rV, logq};
  const LossRefs loss{cfg.loss.kind, cfg.loss.logq, cfg.loss.bpreg, scale_base_};
  const int e0 = data_.step_ext[t], e1 = data_.step_ext[t + 1];
  out_gather_columns(s, b_, v, p, cfg.loss.logq, t);
  gemm(s, Op::N, Op::T, B, C, H, b_.HOUT + off, H, b_.OC, H, b_.R, C, bias(b_.CB));
  gemm(s, Op::N, Op::N, B, kRepeatWidth, H, b_.HOUT + off, H, d.rV, kRepeatWidth, b_.HV, kRepeatWidth);
  out_extra_scores(s, b_, v, p, e0, e1, t);
  out_loss_rows(s, b_, v, p, loss, t);
  // K = C is long and the output small: atomic accumulation (DHLOSS starts zeroed) splits K over blocks.
  Epilogue split;
  split.atomic = true;
  gemm(s, Op::N, Op::N, B, H, C, b_.R, C, b_.OC, H, b_.DHLOSS + off, H, split);
  out_state_grads(s, b_, v, p, dropout, t);
  float* g_out = m.tied ? g_E_.get() : g_O_.get();
  Epilogue scatter;
  scatter.atomic = true;
  scatter.row_map = v.col_slot + static_cast<int64_t>(t) * C;
  gemm(s, Op::T, Op::N, C, H, B, b_.R, C, b_.HOUT + off, H, g_out, H, scatter);
  out_bias_grads(s, b_, v, g_bo_.get(), t);
  out_extra_grads(s, b_, v, g_out, g_bo_.get(), e0, e1);
}

void DeviceWindowEngine::backward_step(const DeviceModel& m, int t, cudaStream_t s) {
  const WindowView& v = data_.d;
  const DenseRefs d = m.refs();
  const int H = m.H, B = b_.B, H2 = 2 * H, H3 = 3 * H;
  const int64_t off = static_cast<int64_t>(t) * B * H, off3 = 3 * off;
  const int64_t HH = static_cast<int64_t>(H) * H;
  Epilogue acc;
  acc.accumulate = true;
  // The session GRU.
  bwd_session_out(s, b_, v, t);
  gemm(s, Op::N, Op::N, B, H, H, b_.DA_S + off3 + H2, H3, d.Wsh + 2 * HH, H, b_.DHR, H);
  bwd_session_reset(s, b_, v, t);
  gemm(s, Op::N, Op::N, B, H, H3, b_.DA_S + off3, H3, d.Wsx, H, b_.DX + off, H);
  gemm(s, Op::N, Op::N, B, H, H2, b_.DA_S + off3, H3, d.Wsh, H, b_.DHT, H, acc);
  // The gate and the proposal.
  bwd_gate(s, b_, v, t);
  gemm(s, Op::N, Op::N, B, H, H, b_.DGPRE + off, H, d.Wg, H, b_.DX + off, H, acc);
  gemm(s, Op::N, Op::N, B, H, H, b_.DS + off, H, d.W0, H, b_.DUO, H);
  // The user GRU (lanes that started a session), and the carries into step t - 1.
  bwd_user_out(s, b_, v, t);
  gemm(s, Op::N, Op::N, B, H, H, b_.DA_U + off3 + H2, H3, d.Wuh + 2 * HH, H, b_.DHR, H);
  bwd_user_reset(s, b_, v, t);
  gemm(s, Op::N, Op::N, B, H, H3, b_.DA_U + off3, H3, d.Wux, H, b_.DHC, H, acc);
  gemm(s, Op::N, Op::N, B, H, H2, b_.DA_U + off3, H3, d.Wuh, H, b_.DUC, H, acc);
  bwd_scatter_inputs(s, b_, v, g_E_.get(), t);
}

// The dense blocks' gradients over all T*B rows at once (rows of inactive lanes are zero).
void DeviceWindowEngine::dense_gradients(const DeviceModel& m, cudaStream_t s) {
  const DenseRefs g(m.layout, g_dense_.get());
  const int H = m.H, H2 = 2 * H, H3 = 3 * H;
  const int64_t TB64 = b_.TB;
  if (TB64 > 0x7fffffff) throw std::invalid_argument("window too large: " + std::to_string(TB64) + " lane steps");
  const int TB = static_cast<int>(TB64);
  const int64_t HH = static_cast<int64_t>(H) * H;
  Epilogue add;
  add.atomic = true;
  gemm(s, Op::T, Op::N, H3, H, TB, b_.DA_S, H3, b_.X, H, g.Wsx, H, add);
  gemm(s, Op::T, Op::N, H2, H, TB, b_.DA_S, H3, b_.HTIL, H, g.Wsh, H, add);
  gemm(s, Op::T, Op::N, H, H, TB, b_.DA_S + H2, H3, b_.SHR, H, g.Wsh + 2 * HH, H, add);
  column_sums(s, TB, H3, b_.DA_S, H3, g.bs);
  gemm(s, Op::T, Op::N, H, H, TB, b_.DGPRE, H, b_.X, H, g.Wg, H, add);
  gemm(s, Op::T, Op::N, H, 2, TB, b_.DGPRE, H, b_.PHI, 2, g.Vg, 2, add);
  column_sums(s, TB, H, b_.DGPRE, H, g.bg);
  gemm(s, Op::T, Op::N, H, H, TB, b_.DS, H, b_.U, H, g.W0, H, add);
  column_sums(s, TB, H, b_.DS, H, g.b0);
  column_sums(s, TB, H, b_.DU0, H, g.u0);
  gemm(s, Op::T, Op::N, H3, H, TB, b_.DA_U, H3, b_.HPREV, H, g.Wux, H, add);
  gemm(s, Op::T, Op::N, H2, H, TB, b_.DA_U, H3, b_.UPREV, H, g.Wuh, H, add);
  gemm(s, Op::T, Op::N, H, H, TB, b_.DA_U + H2, H3, b_.UHR, H, g.Wuh + 2 * HH, H, add);
  column_sums(s, TB, H3, b_.DA_U, H3, g.bu);
  gemm(s, Op::T, Op::N, H, kRepeatWidth, TB, b_.HOUT, H, b_.GHV, kRepeatWidth, g.rV, kRepeatWidth, add);
  column_sums(s, TB, kRepeatWidth, b_.GHV, kRepeatWidth, g.rc);  // rc's 8 columns, then rd's
}

void DeviceWindowEngine::save_states(float* u, float* h, cudaStream_t s) const {
  const size_t n = static_cast<size_t>(b_.B) * b_.H * sizeof(float);
  check(cudaMemcpyAsync(u, b_.UCUR, n, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync (final u)");
  check(cudaMemcpyAsync(h, b_.HCUR, n, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync (final h)");
}

void DeviceWindowEngine::recorded_states(float* u, float* h, cudaStream_t s) const {
  if (!b_.REC_U) throw std::logic_error("recorded_states: the window was run without record");
  const size_t n = static_cast<size_t>(b_.TB) * b_.H * sizeof(float);
  check(cudaMemcpyAsync(u, b_.REC_U, n, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync (states u)");
  check(cudaMemcpyAsync(h, b_.REC_H, n, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync (states h)");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize (states)");
}

}  // namespace hrnn::cuda
