// The recurrent part of a training window (docs/engine.md, "One step of one lane"), batched over a
// block of lanes: each thread runs its lanes through the window step by step with matrix products
// across the block instead of one matrix-vector product per lane, and computes the weight gradients
// of the whole window as a few products with the window's length as their inner dimension.
#pragma once
#include <cstdint>
#include <vector>

#include "hrnn/params.h"

namespace hrnn {

struct Window;

// The dense weights, zero-padded to Hp columns (and rows, per gate block) in the layouts the products
// need; rebuilt for every window.
struct PackedWeights {
  int H = 0, Hp = 0;
  std::vector<float> WxT;               // [H x 4Hp]: Wsx^T (r | z | n), Wg^T: the item vector's products
  std::vector<float> WshT, WuxT, WuhT;  // [H x 3Hp]
  std::vector<float> W0T;               // [H x Hp]
  std::vector<float> Wx;                // [4Hp x Hp]: Wsx (r | z | n), Wg: gradients w.r.t. the item vector
  std::vector<float> Wsh, Wux, Wuh;     // [3Hp x Hp]
  std::vector<float> W0;                // [Hp x Hp]
  std::vector<float> bias4;             // [4Hp]: bs (r | z | n), bg: added to the item vector's products
  std::vector<float> Vg0, Vg1;          // [Hp]: the gate's time weights, by feature
  void pack(const Dense& d, int H);
};

// Lanes [b0, b1) of a window. Its per-(step, lane) values are rows of [T*nb x Hp] matrices, step t's
// lanes contiguous (row t*nb + b - b0), so that a step's lanes and the whole window are both plain
// matrices. Padding columns are never written, so they stay zero.
class LaneBlock {
 public:
  // Sizes the buffers (outside any parallel region: it allocates).
  void allocate(int T, int b0, int b1, int H);
  // Gathers the lanes' item vectors and their products with the input weights.
  void start(const Params& P, const PackedWeights& W, const Window& w);
  // Forward of step t. last_u / last_h: each lane's current state (indexed by lane), advanced here.
  void forward(const Params& P, const PackedWeights& W, const Window& w, int t, const float** last_u,
               const float** last_h);
  // The loss gradient w.r.t. the output state of (t, b); zero unless written between forward and backward.
  float* dh_loss(int t, int b) { return dhl_.data() + row(t, b) * Hp_; }
  // Backward of step t (steps in reverse order); the initial state's gradient goes into gd.u0.
  void backward(const PackedWeights& W, const Window& w, int t, Dense& gd);
  // After backward of step 0: the weight gradients of the whole window into gd, and the gradients
  // w.r.t. the item vectors (dx).
  void finish(const PackedWeights& W, Dense& gd);

  const float* u(int t, int b) const { return u_.data() + row(t, b) * Hp_; }
  const float* h(int t, int b) const { return hout_.data() + row(t, b) * Hp_; }
  const float* dx(int t, int b) const { return dx_.data() + row(t, b) * Hp_; }

 private:
  int64_t row(int t, int b) const { return static_cast<int64_t>(t) * nb_ + (b - b0_); }
  void user_forward(const Params& P, const PackedWeights& W, int64_t r0, int n0, int n1);
  void user_backward(const PackedWeights& W, int n0, int n1);

  int T_ = 0, b0_ = 0, nb_ = 0, H_ = 0, Hp_ = 0;
  // [T*nb x Hp] unless noted.
  std::vector<float> x_, xa_ /* x4 */, hprev_, u_, s_, g_, htil_, sr_, sz_, sn_, shr_, hout_, phi_ /* x2 */;
  std::vector<float> d4_ /* x4: session GRU r | z | n, gate */, ds_, dx_, dhl_;
  // The lanes that start a new session (and so run the user GRU), compact, in step order: step t's are
  // ns_off_[t] .. ns_off_[t+1]; lane of each, and its user GRU inputs, gates and gradients.
  std::vector<int32_t> ns_off_, ns_lane_;
  std::vector<float> uh_, uu_, ur_, uz_, un_, uhr_, dau_ /* x3 */;
  // Gradient carries per lane [nb x Hp], and per-step scratch.
  std::vector<float> dhc_, duc_, t1_ /* x3 */, t2_ /* x2 */, t3_, t4_;
  std::vector<float> wtmp_;  // [4Hp x Hp] weight-gradient products before they are added up
};

}  // namespace hrnn
