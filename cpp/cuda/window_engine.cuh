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
  // Runs w (validated by the caller) with the device parameters m; logq: the device copy of one
  // log sampling probability per item. record: keep every (t, b) lane state (for recorded_states).
  // Returns once the loss is known; the gradients (of the window loss) are then in the buffers below.
  WindowResult run(const DeviceModel& m, const float* logq, const Window& w, const WindowConfig& cfg, bool record,
                   cudaStream_t s);

  const WindowData& data() const { return data_; }
  // Device gradients: the dense blocks (DenseLayout), and per touched row (data().host_rows): E's
  // (with O's when tied), O's (untied) and bo's.
  float* grad_dense() const { return g_dense_.get(); }
  float* grad_E() const { return g_E_.get(); }
  float* grad_O() const { return g_O_.get(); }
  float* grad_bo() const { return g_bo_.get(); }

  // Each lane's state after the window, [B x H] each (synchronous).
  void final_states(float* u, float* h, cudaStream_t s) const;
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
  std::vector<float> loss_;
};

}  // namespace hrnn::cuda
