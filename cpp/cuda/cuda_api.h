// The CUDA engine's entry points for the bindings: plain C++ (no CUDA types), so that code built
// by the host compiler can call them. Only built with HRNN_CUDA.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "hrnn/accelerator.h"
#include "hrnn/params.h"
#include "hrnn/window.h"

namespace hrnn::cuda {

struct DeviceStatus {
  int count = 0;        // visible CUDA devices
  std::string reason;   // why there are none (empty when count > 0)
};

// Never throws: no driver, no device or a broken installation give count 0 and the reason.
DeviceStatus device_status() noexcept;

// The engine on device `device`; throws std::invalid_argument naming the reason when it is not
// visible. scoring: how recommend_batch scores ("auto"; "full" or "candidates" force one pass, for
// tests and benchmarks).
std::shared_ptr<Accelerator> make_accelerator(int device, const std::string& scoring = "auto");

// One window's loss, lane states and gradients on the device (the CPU's window_loss_grad).
struct WindowOutputs {
  WindowResult result;
  std::vector<float> u, h;      // [T x B x H]: the state after step t (carried for inactive lanes)
  Dense dense;                  // dense blocks' gradients
  std::vector<float> E, O, bo;  // full-size item-table gradients (E includes O's when tied; O empty then)
};
WindowOutputs window_loss_grad(int device, const Params& P, const Window& w, const float* logq,
                               const WindowConfig& cfg);

}  // namespace hrnn::cuda
