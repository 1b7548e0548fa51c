// The optimizer on the device: the same Adagrad (with momentum) / Adam updates as optimizer.cpp,
// dense blocks every step, item-table rows only where the window touched them.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "device_model.cuh"
#include "hrnn/optimizer.h"

namespace hrnn::cuda {

class DeviceOptimizer {
 public:
  DeviceOptimizer(const DeviceModel& m, const OptConfig& cfg, cudaStream_t s);
  // One step. g_dense: DenseLayout; rows / row_flags: the touched rows (kRowIn / kRowOut) with
  // their gradients g_E (with O's when tied), g_O (untied) and g_bo, n_rows of them.
  void step(DeviceModel& m, const float* g_dense, const int32_t* rows, const uint8_t* row_flags, int64_t n_rows,
            const float* g_E, const float* g_O, const float* g_bo, cudaStream_t s);

 private:
  OptConfig cfg_;
  bool two_ = false;  // a second state slot (Adam, or Adagrad with momentum)
  int64_t t_ = 0;
  DeviceBuffer<float> dense_a_, dense_b_, E_a_, E_b_, O_a_, O_b_, bo_a_, bo_b_;
};

}  // namespace hrnn::cuda
