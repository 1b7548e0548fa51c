// recommend_batch on the device: scores = O h + bo for many states at once, then each row's exact
// top k (radix select, ties to the lower item index as the CPU's TopK), exclusions as -inf.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "check.cuh"
#include "hrnn/params.h"
#include "hrnn/scoring.h"

namespace hrnn::cuda {

constexpr int kMaxDeviceK = 2048;  // larger k is answered by the CPU

class DeviceScorer {
 public:
  // The top k of each row of hs [M x H] over all items except the row's exclude set and boosted
  // items, which the caller merges in (as score_topk does): out [M x k], best first, padded with
  // -1 / -inf. P: the parameters whose output layer is on the device (see upload).
  void top_k(const Params& P, const float* hs, int64_t M, int k, const std::vector<ItemSet>& exclude,
             const std::vector<Boosts>& boosts, int32_t* out_items, float* out_scores, cudaStream_t s);
  // Copies the output layer (O or E when tied) and every item's bias (n_items values: bo plus the
  // transition prior's dense part) to the device.
  void upload(const Params& P, const float* bias, cudaStream_t s);
  bool ready() const { return ready_; }
  void release();  // frees the device copy

 private:
  bool ready_ = false;
  DeviceBuffer<float> O_, bias_, hs_, scores_;
  DeviceBuffer<int32_t> masked_, items_;
  DeviceBuffer<float> top_scores_;
};

}  // namespace hrnn::cuda
