// An optional device engine (the CUDA one in cpp/cuda) that an Engine hands its training windows
// and its batch scoring to. The core only sees this interface: it never needs a device toolkit.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "hrnn/params.h"
#include "hrnn/scoring.h"
#include "hrnn/trainer.h"

namespace hrnn {

class Accelerator {
 public:
  virtual ~Accelerator() = default;
  virtual const char* name() const = 0;
  // What trains each window of a fit; P is written back at the end of every epoch.
  virtual std::unique_ptr<WindowRunner> make_runner(Params& P, const TrainConfig& cfg) = 0;
  // The top k of each of the M states hs [M x H] over the whole catalogue, as score_topk (with
  // one exclusion set and one boost list per row; bias: every item's additive term, the scoring
  // table's). Returns false, writing nothing, for a query it does not take (the caller then scores
  // on the CPU). num_threads: the host threads for the host's share of the work (0 = all cores).
  virtual bool score_topk(const Params& P, const float* bias, const float* hs, int64_t M, int k,
                          const std::vector<ItemSet>& exclude, const std::vector<Boosts>& boosts, int32_t* out_items,
                          float* out_scores, int num_threads) = 0;
  // The parameters changed: a copy kept for scoring is stale.
  virtual void params_changed() = 0;
};

}  // namespace hrnn
