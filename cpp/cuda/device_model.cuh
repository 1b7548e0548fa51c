// The parameters on the device: the item tables, and the dense blocks packed in one buffer in
// Dense::for_each order (so that the optimizer updates them in one pass).
#pragma once
#include <cstdint>
#include <string>

#include "check.cuh"
#include "hrnn/params.h"

namespace hrnn::cuda {

// Where each dense block starts in the packed buffer, and its size.
struct DenseLayout {
  int H = 0;
  int64_t total = 0;
  int64_t Wg = 0, Vg = 0, bg = 0, W0 = 0, b0 = 0, Wsx = 0, Wsh = 0, bs = 0, Wux = 0, Wuh = 0, bu = 0, u0 = 0, rc = 0,
          rd = 0, rV = 0;
  int64_t rV_size = 0;
  explicit DenseLayout(const Params& P);
  DenseLayout() = default;
};

// Device pointers to each dense block of a packed buffer.
struct DenseRefs {
  float *Wg, *Vg, *bg, *W0, *b0, *Wsx, *Wsh, *bs, *Wux, *Wuh, *bu, *u0, *rc, *rd, *rV;
  DenseRefs(const DenseLayout& L, float* base);
};

class DeviceModel {
 public:
  // Copies every parameter to the device (allocating on first use or when the sizes change).
  void upload(const Params& P, cudaStream_t s);
  // Copies every parameter back into P (same sizes); returns once the copies are done.
  void download(Params& P, cudaStream_t s) const;

  int64_t N = 0;
  int H = 0;
  bool tied = false;
  DenseLayout layout;
  DeviceBuffer<float> E, O, bo, dense;
  float* out_rows() const { return tied ? E.get() : O.get(); }
  DenseRefs refs() const { return DenseRefs(layout, dense.get()); }
};

}  // namespace hrnn::cuda
