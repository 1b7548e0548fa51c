#include "hrnn/optimizer.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "hrnn/errors.h"
#include "hrnn/kernels.h"
#include "hrnn/parallel.h"

namespace hrnn {

Optimizer::Optimizer(const Params& P, const OptConfig& cfg) : cfg_(cfg) {
  require(std::isfinite(cfg.lr) && cfg.lr > 0.f, "learning_rate must be > 0");
  require(cfg.momentum >= 0.f && cfg.momentum < 1.f, "momentum must be in [0, 1)");
  const bool two = cfg.kind == OptKind::Adam || cfg.momentum > 0.f;
  auto make = [&](size_t n) {
    State s;
    s.a.assign(n, 0.f);
    if (two) s.b.assign(n, 0.f);
    return s;
  };
  P.d.for_each([&](const char* name, const std::vector<float>& v) {
    dense_.push_back(make(v.size()));
    dense_lr_.push_back(std::string(name) == "rV" ? cfg.lr * cfg.repeat_lr_scale : cfg.lr);
  });
  E_ = make(P.E.size());
  O_ = make(P.O.size());
  bo_ = make(P.bo.size());
}

void Optimizer::update(float* p, const float* g, float* a, float* b, int64_t n, float lr) const {
  const float eps = cfg_.eps;
  if (cfg_.kind == OptKind::Adagrad) {
    const float mom = cfg_.momentum;
    for (int64_t i = 0; i < n; ++i) {
      a[i] += g[i] * g[i];
      const float u = lr * g[i] / std::sqrt(a[i] + eps);
      if (b) {
        b[i] = mom * b[i] + u;
        p[i] -= b[i];
      } else {
        p[i] -= u;
      }
    }
  } else {
    const float b1 = cfg_.beta1, b2 = cfg_.beta2, c1 = 1.f / bc1_, c2 = 1.f / bc2_;
    for (int64_t i = 0; i < n; ++i) {
      a[i] = b1 * a[i] + (1.f - b1) * g[i];
      b[i] = b2 * b[i] + (1.f - b2) * g[i] * g[i];
      p[i] -= lr * (a[i] * c1) / (std::sqrt(b[i] * c2) + eps);
    }
  }
}

void Optimizer::update_row(float* p, const float* g, State& s, int64_t offset, int64_t n, float lr) const {
  update(p + offset, g, s.a.data() + offset, s.b.empty() ? nullptr : s.b.data() + offset, n, lr);
}

void Optimizer::step(Params& P, const Gradients& g, int num_threads) {
  ++t_;
  if (cfg_.kind == OptKind::Adam) {
    bc1_ = 1.f - std::pow(cfg_.beta1, static_cast<float>(t_));
    bc2_ = 1.f - std::pow(cfg_.beta2, static_cast<float>(t_));
  }
  std::vector<std::vector<float>*> params;
  std::vector<const std::vector<float>*> grads;
  P.d.for_each([&](const char*, std::vector<float>& v) { params.push_back(&v); });
  const_cast<Dense&>(g.dense).for_each([&](const char*, std::vector<float>& v) { grads.push_back(&v); });
  parallel_for(static_cast<int64_t>(params.size()), num_threads, [&](int64_t k) {
    update_row(params[k]->data(), grads[k]->data(), dense_[k], 0, static_cast<int64_t>(params[k]->size()),
               dense_lr_[k]);
  });

  const int H = P.H;
  const int64_t n_out = static_cast<int64_t>(g.out.rows.size());
  const int64_t n_in = static_cast<int64_t>(g.emb.rows.size());
  // Item i's rows are updated by thread i % team, the thread whose cache the training window left
  // its gradient in; the rows are scattered over the tables, so a few are fetched ahead.
  constexpr int64_t kAhead = 8;
  Optimizer::State& table_state = P.tied ? E_ : O_;
  float* table = P.tied ? P.E.data() : P.O.data();
  auto prefetch = [&](const SparseGrad& sg, int64_t s, int width) {
    const int64_t off = static_cast<int64_t>(sg.rows[s]) * H;
    prefetch_row(table + off, H);
    prefetch_row(table_state.a.data() + off, H);
    prefetch_row(sg.grad.data() + s * width, width);
  };
  parallel_team(num_threads, [&](int th, int team) {
    std::vector<float> sum(H);
    for (int64_t s = 0; s < n_out; ++s) {
      if (s + kAhead < n_out && g.out.rows[s + kAhead] % team == th) prefetch(g.out, s + kAhead, H + 1);
      const int32_t item = g.out.rows[s];
      if (item % team != th) continue;
      const float* gr = g.out.grad.data() + s * (H + 1);
      const int64_t off = static_cast<int64_t>(item) * H;
      if (P.tied) {
        std::copy(gr, gr + H, sum.begin());
        if (const float* ge = g.emb.row(item))
          for (int k = 0; k < H; ++k) sum[k] += ge[k];
        update_row(P.E.data(), sum.data(), E_, off, H, cfg_.lr);
      } else {
        update_row(P.O.data(), gr, O_, off, H, cfg_.lr);
      }
      update_row(P.bo.data(), gr + H, bo_, item, 1, cfg_.lr);
    }
    for (int64_t s = 0; s < n_in; ++s) {
      const int32_t item = g.emb.rows[s];
      if (item % team != th || (P.tied && g.out.slot_of[item] >= 0)) continue;  // (tied: updated above)
      update_row(P.E.data(), g.emb.grad.data() + s * H, E_, static_cast<int64_t>(item) * H, H, cfg_.lr);
    }
  });
}

}  // namespace hrnn
