// A training window on the device: the host Window's arrays in one packed upload, plus the index
// maps that the host derives from it (which table rows the window touches, and each input's,
// column's and extra column's gradient row).
#pragma once
#include <cstdint>
#include <vector>

#include "check.cuh"
#include "hrnn/window.h"

namespace hrnn::cuda {

enum RowFlags : uint8_t { kRowIn = 1, kRowOut = 2 };  // a touched row is an input, a candidate, or both

// The device pointers, as kernels take them (by value).
struct WindowView {
  // Device copies of the Window's arrays.
  const int32_t *items, *targets, *negatives, *rep_offsets, *ext_offsets, *ext_items, *ext_occ_offsets;
  const uint8_t *flags, *rep_pos, *rep_age, *ext_pos, *ext_age;
  const float *gaps, *weights, *u_init, *h_init;
  // Derived: the touched rows (slot -> item, flags), the slot of each input [T*B], of each candidate
  // column [T*C] (-1: an empty column), of each extra item [E], and each extra's (t, b) as t*B+b [E].
  const int32_t *rows, *in_slot, *col_slot, *ext_slot, *ext_tb;
  const uint8_t* row_flags;
  int T, B, S, C;
};

struct WindowData {
  WindowView d{};
  int T = 0, B = 0, S = 0, C = 0;
  int64_t n_ext = 0, n_rows = 0, n_targets = 0;
  std::vector<int32_t> host_rows;      // slot -> item
  std::vector<uint8_t> host_row_flags;
  std::vector<int64_t> step_active, step_targets;  // per step: active lanes, lanes with a target
  std::vector<int32_t> step_ext;                    // [T+1]: the extras of step t are step_ext[t] .. step_ext[t+1]

  // Validates nothing (the caller has); returns once w is copied to pinned memory (the device copy
  // runs on s). The device arrays stay valid for the work queued on s before the next upload.
  // n_items: the size of the item tables.
  void upload(const Window& w, int64_t n_items, cudaStream_t s);

 private:
  std::vector<int32_t> slot_of_, in_slot_, col_slot_, ext_slot_, ext_tb_;
  PinnedBuffer pinned_[2];
  Event copied_[2];
  int next_pinned_ = 0;
  DeviceBuffer<char> dev_;
};

}  // namespace hrnn::cuda
