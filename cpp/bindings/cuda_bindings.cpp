// The CUDA engine's bindings, compiled only with HRNN_CUDA: which devices are visible, handing an
// Engine's training and batch scoring to a device, and window_loss_grad on the device (tests).
#include "cuda_api.h"
#include "hrnn/engine.h"
#include "window_convert.h"

namespace hrnn_py {

void bind_cuda(py::module_& m) {
  m.def("cuda_status", [] {
    const hrnn::cuda::DeviceStatus st = hrnn::cuda::device_status();
    return py::make_tuple(st.count, st.reason);
  }, "(number of visible CUDA devices, why there are none or '').");
  m.def("cuda_attach",
        [](hrnn::Engine& e, int device, const std::string& scoring) {
          py::gil_scoped_release release;
          e.set_accelerator(hrnn::cuda::make_accelerator(device, scoring));
          e.params_changed();
        },
        py::arg("engine"), py::arg("device") = 0, py::arg("scoring") = "auto",
        "Train (from the next start_training on) and answer recommend_batch on CUDA device `device`; "
        "scoring 'full' or 'candidates' forces one way of scoring (tests, benchmarks).");
  m.def("cuda_window_loss_grad",
        [](const py::dict& params, const py::dict& w, const std::string& loss, bool logq, float bpreg, float dropout,
           int device) {
          hrnn::Params P = params_from_dict(params);
          std::vector<float> lq;
          hrnn::Window win = window_from_dict(w, P, lq);
          const hrnn::WindowConfig cfg = window_config(loss, logq, bpreg, dropout, 1);
          hrnn::cuda::WindowOutputs out;
          {
            py::gil_scoped_release release;
            out = hrnn::cuda::window_loss_grad(device, P, win, lq.data(), cfg);
          }
          return window_outputs(P, win, out.result, out.u.data(), out.h.data(), out.dense, out.E.data(),
                                out.O.data(), out.bo.data());
        },
        py::arg("params"), py::arg("window"), py::arg("loss") = "softmax", py::arg("logq") = true,
        py::arg("bpreg") = 1.0f, py::arg("dropout") = 0.0f, py::arg("device") = 0,
        "window_loss_grad on a CUDA device.");
}

}  // namespace hrnn_py
