// recommend_batch on the device: scores = O h + bo for many states at once, then each row's exact
// top k (radix select, ties to the lower item index as the CPU's TopK), exclusions as -inf.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "check.cuh"
#include "hrnn/params.h"
#include "hrnn/scoring.h"

namespace hrnn::cuda {

constexpr int kMaxDeviceK = 2048;  // larger k is answered by the CPU

// How a batch is scored: the candidate pass (candidates.cuh) where it pays (large catalogues, small
// k), else every score written and scanned; tests force either.
enum class DeviceScoring { Auto, Full, Candidates };

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
  void set_mode(DeviceScoring m) { mode_ = m; }

 private:
  // The rows of hs [M x H] (on the host; hs_ on the device) listed in `rows`, every score written.
  void full_top_k(const Params& P, const float* hs, int64_t M, const std::vector<int64_t>& rows, int k, const std::vector<ItemSet>& exclude,
                  const std::vector<Boosts>& boosts, int32_t* out_items, float* out_scores, cudaStream_t s);
  // The candidate pass over all M rows of hs_; appends the rows it could not answer to
  // `unanswered`, or returns false (nothing written) where it does not apply.
  bool candidate_top_k(const Params& P, int64_t M, int k, const std::vector<ItemSet>& exclude,
                       const std::vector<Boosts>& boosts, int32_t* out_items, float* out_scores,
                       std::vector<int64_t>& unanswered, cudaStream_t s);

  DeviceScoring mode_ = DeviceScoring::Auto;
  bool ready_ = false, o16_ready_ = false;
  DeviceBuffer<float> O_, bias_, hs_, hs_sub_, scores_, top_scores_;
  DeviceBuffer<int32_t> masked_, items_;
  // The candidate pass: bf16 output layer and its norms (made on first use), per-batch buffers.
  DeviceBuffer<__nv_bfloat16> O16_, h16_;
  DeviceBuffer<float> onorm_, hnorm_, tau_, sub_bias_, sub_top_;
  DeviceBuffer<int32_t> sub_items_, counts_, cand_, mask_off_, mask_items_;
  DeviceBuffer<uint8_t> need_full_;
};

}  // namespace hrnn::cuda
