// The hrnn._core extension module: conversions only; the work is done by the core with the GIL released.
#include <pybind11/pybind11.h>

#include "hrnn/gemm.h"
#include "hrnn/quant.h"
#ifdef HRNN_HAVE_CUDA
#include "cuda_api.h"
#endif

namespace py = pybind11;

namespace hrnn_py {
void bind_engine(py::module_& m);
void bind_window(py::module_& m);
#ifdef HRNN_HAVE_CUDA
void bind_cuda(py::module_& m);
#endif
}  // namespace hrnn_py

PYBIND11_MODULE(_core, m) {
  m.doc() = "hrnn native core";
  m.def("build_info", [] {
    py::dict d;
#ifdef HRNN_HAVE_OPENMP
    d["openmp"] = true;
#else
    d["openmp"] = false;
#endif
#ifdef HRNN_HAVE_CUDA
    d["cuda_compiled"] = true;
    d["cuda_devices"] = hrnn::cuda::device_status().count;
#else
    d["cuda_compiled"] = false;
    d["cuda_devices"] = 0;
#endif
    d["compiler"] = __VERSION__;
    d["kernels"] = hrnn::gemm_isa();
    d["scoring_kernels"] = hrnn::score_isa();
    return d;
  });
  hrnn_py::bind_window(m);
  hrnn_py::bind_engine(m);
#ifdef HRNN_HAVE_CUDA
  hrnn_py::bind_cuda(m);
#endif
}
