// A training window on the device (docs/engine.md, "A training window"): the forward pass of the
// T x B lanes, the output layer with its loss, and the exact backward pass, with the same math as
// the CPU's WindowEngine. Gradients stay on the device for the optimizer.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "device_model.cuh"
#include "hrnn/window.h"
#include "window_buffers.cuh"
#include "window_data.cuh"

namespace hrnn::cuda {

class DeviceWindowEngine {
 public:
  // Queues w (validated by the caller) on s with the device parameters m; logq: the device copy of
  // one log sampling probability per item. record: keep every (t, b) lane state (for
  // recorded_states). u0, h0: device [B x H] lane states to start from instead of w's u_init and
  // h_init. Once the work is done, the gradients (of the window loss) are in the buffers below and
  // the loss terms (copy_losses), until the next enqueue.
  void enqueue(const DeviceModel& m, const float* logq, const Window& w, const WindowConfig& cfg, bool record,
               cudaStream_t s, const float* u0 = nullptr, const float* h0 = nullptr);
  // enqueue, then waits for the loss.
  WindowResult run(const DeviceModel& m, const float* logq, const Window& w, const WindowConfig& cfg, bool record,
                   cudaStream_t s);
  // Queues the copy of the window's T*B loss terms (weight * loss, 0 without a target) to host.
  void copy_losses(float* host, cudaStream_t s) const;
  int64_t loss_terms() const { return b_.TB; }

  const WindowData& data() const { return data_; }
  // Device gradients: the dense blocks (DenseLayout), and per touched row (data().host_rows): E's
  // (with O's when tied), O's (untied) and bo's.
  float* grad_dense() const { return g_dense_.get(); }
  float* grad_E() const { return g_E_.get(); }
  float* grad_O() const { return g_O_.get(); }
  float* grad_bo() const { return g_bo_.get(); }

  // Queues the copy of each lane's state after the window into device buffers u, h [B x H].
  void save_states(float* u, float* h, cudaStream_t s) const;
  // The state of every (t, b) after step t (carried for inactive lanes), [T x B x H] each, when run
  // with record (synchronous).
  void recorded_states(float* u, float* h, cudaStream_t s) const;

 private:
  void allocate(int T, int B, int C, int H, int64_t n_ext, bool record);
  void forward_step(const DeviceModel& m, const float* logq, const WindowConfig& cfg, int t, cudaStream_t s);
  void backward_step(const DeviceModel& m, int t, cudaStream_t s);
  void dense_gradients(const DeviceModel& m, cudaStream_t s);

  WindowData data_;
  WindowBuffers b_{};
  DeviceBuffer<float> arena_, g_dense_, g_E_, g_O_, g_bo_;
  float* zeroed_ = nullptr;  // the part of the arena cleared for every window
  size_t zeroed_floats_ = 0;
  float scale_base_ = 0.f;
};

// The sum of n loss terms, in order, in double.
double sum_losses(const float* loss, int64_t n);

}  // namespace hrnn::cuda
