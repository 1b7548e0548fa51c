#include <cstring>

#include "window_data.cuh"

namespace hrnn::cuda {
namespace {

// Lays out arrays at 256-byte aligned offsets of one buffer, for a single host-to-device copy.
class Packer {
 public:
  template <class T>
  void add(const T** dst, const std::vector<T>& src) {
    parts_.push_back({reinterpret_cast<const void**>(dst), src.data(), src.size() * sizeof(T), size_});
    size_ += (src.size() * sizeof(T) + 255) / 256 * 256;
  }
  // host: a pinned buffer no earlier copy still reads (the caller waits for that).
  void copy(PinnedBuffer& host_buf, DeviceBuffer<char>& dev, cudaStream_t s) {
    char* host = host_buf.reserve(size_ + 256);
    char* base = dev.reserve(size_ + 256);  // a reallocation waits for the device (cudaFree)
    for (const Part& p : parts_) {
      if (p.bytes) std::memcpy(host + p.offset, p.src, p.bytes);
      *p.dst = base + p.offset;
    }
    if (size_) check(cudaMemcpyAsync(base, host, size_, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync (window)");
  }

 private:
  struct Part {
    const void** dst;
    const void* src;
    size_t bytes, offset;
  };
  std::vector<Part> parts_;
  size_t size_ = 0;
};

}  // namespace

void WindowData::upload(const Window& w, int64_t n_items, cudaStream_t s) {
  T = w.T, B = w.B, S = w.S, C = w.B + w.S;
  d.T = T, d.B = B, d.S = S, d.C = C;
  const int64_t TB = static_cast<int64_t>(T) * B;
  n_ext = static_cast<int64_t>(w.ext_items.size());
  if (static_cast<int64_t>(slot_of_.size()) != n_items) slot_of_.assign(n_items, -1);
  host_rows.clear();
  host_row_flags.clear();
  auto touch = [&](int32_t item, uint8_t flag) {
    int32_t& slot = slot_of_[item];
    if (slot < 0) {
      slot = static_cast<int32_t>(host_rows.size());
      host_rows.push_back(item);
      host_row_flags.push_back(0);
    }
    host_row_flags[slot] |= flag;
    return slot;
  };
  // The same rows as the CPU engine touches (the optimizer updates exactly these).
  in_slot_.assign(TB, -1);
  col_slot_.assign(static_cast<size_t>(T) * C, -1);
  ext_slot_.resize(n_ext);
  ext_tb_.resize(n_ext);
  step_active.assign(T, 0);
  step_targets.assign(T, 0);
  step_ext.assign(T + 1, 0);
  n_targets = 0;
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) {
      const int64_t i = static_cast<int64_t>(t) * B + b;
      if (w.items[i] < 0) continue;
      in_slot_[i] = touch(w.items[i], kRowIn);
      ++step_active[t];
      if (w.targets[i] >= 0) {
        col_slot_[static_cast<size_t>(t) * C + b] = touch(w.targets[i], kRowOut);
        ++step_targets[t];
      }
    }
    n_targets += step_targets[t];
    for (int c = 0; c < S; ++c)
      col_slot_[static_cast<size_t>(t) * C + B + c] = touch(w.negatives[static_cast<size_t>(t) * S + c], kRowOut);
    step_ext[t + 1] = w.ext_offsets[static_cast<size_t>(t + 1) * B];
    for (int64_t i = static_cast<int64_t>(t) * B; i < static_cast<int64_t>(t + 1) * B; ++i)
      for (int32_t e = w.ext_offsets[i]; e < w.ext_offsets[i + 1]; ++e) {
        ext_slot_[e] = touch(w.ext_items[e], kRowOut);
        ext_tb_[e] = static_cast<int32_t>(i);
      }
  }
  n_rows = static_cast<int64_t>(host_rows.size());
  for (int32_t item : host_rows) slot_of_[item] = -1;

  Packer p;
  p.add(&d.items, w.items);
  p.add(&d.targets, w.targets);
  p.add(&d.negatives, w.negatives);
  p.add(&d.rep_offsets, w.rep_offsets);
  p.add(&d.ext_offsets, w.ext_offsets);
  p.add(&d.ext_items, w.ext_items);
  p.add(&d.ext_occ_offsets, w.ext_occ_offsets);
  p.add(&d.flags, w.flags);
  p.add(&d.rep_pos, w.rep_pos);
  p.add(&d.rep_age, w.rep_age);
  p.add(&d.ext_pos, w.ext_pos);
  p.add(&d.ext_age, w.ext_age);
  p.add(&d.gaps, w.gaps);
  p.add(&d.weights, w.weights);
  p.add(&d.u_init, w.u_init);
  p.add(&d.h_init, w.h_init);
  p.add(&d.rows, host_rows);
  p.add(&d.row_flags, host_row_flags);
  p.add(&d.in_slot, in_slot_);
  p.add(&d.col_slot, col_slot_);
  p.add(&d.ext_slot, ext_slot_);
  p.add(&d.ext_tb, ext_tb_);
  // Two pinned buffers, so that this window is packed while the previous one's copy may still be
  // under way; the device buffer is reused in stream order.
  const int at = next_pinned_;
  next_pinned_ ^= 1;
  copied_[at].wait();
  p.copy(pinned_[at], dev_, s);
  copied_[at].record(s);
}

}  // namespace hrnn::cuda
