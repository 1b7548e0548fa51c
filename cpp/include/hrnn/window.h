// A training window (docs/engine.md, "A training window"): T steps of B lanes, forward, loss and the
// exact backward pass, with gradients for the dense blocks and the touched rows of the item tables.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "hrnn/lane_block.h"
#include "hrnn/loss.h"
#include "hrnn/params.h"

namespace hrnn {

struct Window {
  int T = 0, B = 0, S = 0;
  std::vector<int32_t> items, targets;  // [T*B]; -1 = inactive lane / no target
  std::vector<float> gaps, weights;     // [T*B]
  std::vector<uint8_t> flags;           // [T*B] StepFlags
  std::vector<int32_t> negatives;       // [T*S]
  std::vector<float> u_init, h_init;    // [B*H] lane states entering the window (constants)
  // Repeat occurrences of each (t, b)'s target: entries rep_offsets[i] .. rep_offsets[i+1].
  std::vector<int32_t> rep_offsets;     // [T*B + 1]
  std::vector<uint8_t> rep_pos, rep_age;
  // Extra candidate columns of each (t, b): the lane's other recent items, entries
  // ext_offsets[i] .. ext_offsets[i+1] of ext_items; item e's occurrences are
  // ext_occ_offsets[e] .. ext_occ_offsets[e+1] of ext_pos / ext_age.
  std::vector<int32_t> ext_offsets, ext_items, ext_occ_offsets;
  std::vector<uint8_t> ext_pos, ext_age;

  void resize(int T, int B, int S, int H);
  // Throws std::invalid_argument if an index is out of range or a flag is inconsistent.
  void validate(int64_t n_items) const;
};

// Gradient rows of one per-item table, for the rows a window touched.
struct SparseGrad {
  int width = 0;
  std::vector<int32_t> slot_of;  // [n_items], -1 = untouched
  std::vector<int32_t> rows;     // slot -> item
  std::vector<float> grad;       // [rows.size() * width]

  void reset(int64_t n_items, int width);
  void clear();  // O(touched rows)
  void touch(int32_t item);
  // Sizes grad for the touched rows, leaving their values to whoever zeroes them (zero_row).
  void size_grads() { grad.resize(rows.size() * static_cast<size_t>(width)); }
  void zero_row(size_t slot) { std::fill_n(grad.begin() + slot * width, width, 0.f); }
  const float* row(int32_t item) const {
    const int32_t s = slot_of[item];
    return s < 0 ? nullptr : grad.data() + static_cast<int64_t>(s) * width;
  }
};

struct Gradients {
  Dense dense;
  SparseGrad emb;  // rows of E that were inputs (width H)
  SparseGrad out;  // rows of O (or E when tied) that were candidates, plus their bias (width H + 1)
  void reset(const Params& P);
};

constexpr int kMaxExtras = 256; // extra columns of one lane at one step (at most kRepeatWindow - 1 in training)

struct WindowConfig {
  LossConfig loss;
  float dropout = 0.f;
  uint64_t dropout_seed = 0;  // masks are drawn per (window, step, lane): thread-count independent
  int num_threads = 1;
};

struct WindowResult {
  double loss_sum = 0.0;  // sum of weight * loss over (t, b) with a target
  int64_t n_targets = 0;
};

class WindowEngine {
 public:
  // Gradients are of loss_sum / n_targets (the window loss); `logq` has one entry per item.
  WindowResult run(const Params& P, const Window& w, const float* logq, const WindowConfig& cfg,
                   Gradients& g);
  // The state leaving step t of lane b (valid after run, for active (t, b)).
  const float* u_at(int t, int b) const;
  const float* h_at(int t, int b) const;
  // The lane's state after the window (its last active step, or the initial state).
  const float* final_u(int b) const { return last_u_[b]; }
  const float* final_h(int b) const { return last_h_[b]; }

 private:
  // The output layer: lanes' (dropped-out) states per step, the current step's logits and their
  // gradients, the extra columns' gradients, and every step's candidate items (all padded for the
  // GEMM kernels).
  std::vector<float> hout_, mask_, R_, dl_, dhout_, ext_g_;
  std::vector<int32_t> col_items_;
  std::vector<uint8_t> inc_;  // per thread: which columns a BPR-max row includes
  // A step's candidate rows gathered (oc) and transposed (oct), and their gradients (doc, dcb); two
  // sets, for even and odd steps (a step's set is rewritten two steps later, when every thread is
  // done with it).
  struct Candidates {
    std::vector<float> oc, oct, cbias, clq, doc, dcb;
  };
  Candidates cand_[2];
  // [T x Cp]: the first column of each column's item at its step (-1: no item); and per thread, per
  // g.out slot, the step where the thread last saw the item and its first column there.
  std::vector<int32_t> first_col_;
  struct ColumnsSeen {
    std::vector<int32_t> stamp, first;
  };
  std::vector<ColumnsSeen> col_seen_;
  // The extra columns' gradient rows, lane by lane: a lane's extra items recur at nearly every
  // step, so each lane's distinct extra items get their rows from one product [U x T] . [T x H]
  // of their per-step logit gradients and the lane's states, and only those U rows are added into
  // the table (not one row per item and step).
  struct LaneExtras {
    std::vector<int32_t> items;     // [U] the lane's distinct extra items, first seen first
    std::vector<float> g, rows, bias;  // [U x T] logit gradients; [U x Hp] and [U] what they add
  };
  std::vector<LaneExtras> lane_ext_;
  std::vector<int32_t> ext_local_;  // [E] each extra column's index among its lane's items
  std::vector<ColumnsSeen> ext_seen_;  // per thread: the lane that last saw a g.out slot, its index there
  PackedWeights packed_;
  std::vector<LaneBlock> blocks_;  // the recurrent part, one block of lanes per thread
  std::vector<int> lane_block_;
  std::vector<const float*> last_u_, last_h_;
  std::vector<Dense> thread_grads_;
};

}  // namespace hrnn
