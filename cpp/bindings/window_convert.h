// Training windows from Python dicts and their results back, shared by window_loss_grad on the CPU
// (window_bindings.cpp) and on the device (cuda_bindings.cpp), and the optimizer's settings.
#pragma once
#include <string>
#include <vector>

#include "convert.h"
#include "hrnn/optimizer.h"
#include "hrnn/params.h"
#include "hrnn/window.h"

namespace hrnn_py {

// Parameters by name (no "O": tied), each block's shape checked.
hrnn::Params params_from_dict(const py::dict& d);
// The window (validated) and its "logq" (one entry per item).
hrnn::Window window_from_dict(const py::dict& w, const hrnn::Params& P, std::vector<float>& logq);
// "adagrad" or "adam" (its eps 1e-8), as the trainer and optimizer_steps take it.
hrnn::OptConfig opt_config(const std::string& optimizer, float learning_rate, float momentum);
hrnn::WindowConfig window_config(const std::string& loss, bool logq, float bpreg, float dropout, int num_threads);
// {"loss", "u", "h" [T, B, H], "grads": every block}; gE [N x H] includes O's when tied, gO is
// read only when untied.
py::dict window_outputs(const hrnn::Params& P, const hrnn::Window& win, const hrnn::WindowResult& res,
                        const float* u_states, const float* h_states, const hrnn::Dense& dense, const float* gE,
                        const float* gO, const float* gb);

}  // namespace hrnn_py
