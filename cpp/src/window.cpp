#include "hrnn/window.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "hrnn/errors.h"
#include "hrnn/gemm.h"
#include "hrnn/kernels.h"
#include "hrnn/parallel.h"
#include "hrnn/repeat.h"
#include "hrnn/rng.h"
#include "hrnn/step.h"

namespace hrnn {

void Window::resize(int T_, int B_, int S_, int H) {
  T = T_, B = B_, S = S_;
  const size_t tb = static_cast<size_t>(T) * B;
  items.assign(tb, -1);
  targets.assign(tb, -1);
  gaps.assign(tb, 0.f);
  weights.assign(tb, 1.f);
  flags.assign(tb, 0);
  negatives.assign(static_cast<size_t>(T) * S, 0);
  u_init.assign(static_cast<size_t>(B) * H, 0.f);
  h_init.assign(static_cast<size_t>(B) * H, 0.f);
  rep_offsets.assign(tb + 1, 0);
  rep_pos.clear();
  rep_age.clear();
  ext_offsets.assign(tb + 1, 0);
  ext_items.clear();
  ext_occ_offsets.assign(1, 0);
  ext_pos.clear();
  ext_age.clear();
}

void Window::validate(int64_t n_items) const {
  const size_t tb = static_cast<size_t>(T) * B;
  require(T > 0 && B > 0 && S >= 0, "window sizes must be positive");
  require(items.size() == tb && targets.size() == tb && gaps.size() == tb && weights.size() == tb &&
              flags.size() == tb && negatives.size() == static_cast<size_t>(T) * S,
          "window arrays do not match its sizes");
  for (size_t i = 0; i < tb; ++i) {
    require(items[i] >= -1 && items[i] < n_items, "window item out of range: " + std::to_string(items[i]));
    require(targets[i] >= -1 && targets[i] < n_items,
            "window target out of range: " + std::to_string(targets[i]));
    require(items[i] >= 0 || targets[i] < 0, "a target needs an input item at the same step");
    require(std::isfinite(weights[i]) && weights[i] >= 0.f, "loss weights must be finite and >= 0");
    require(std::isfinite(gaps[i]), "gaps must be finite");
  }
  for (int32_t n : negatives)
    require(n >= 0 && n < n_items, "negative sample out of range: " + std::to_string(n));
  require(rep_offsets.size() == tb + 1 && rep_offsets[0] == 0 &&
              rep_offsets[tb] == static_cast<int32_t>(rep_pos.size()) && rep_pos.size() == rep_age.size(),
          "repeat occurrence arrays do not match the window");
  for (size_t i = 0; i < tb; ++i)
    require(rep_offsets[i] <= rep_offsets[i + 1], "repeat occurrence offsets must be non-decreasing");
  for (size_t m = 0; m < rep_pos.size(); ++m)
    require(rep_pos[m] < kPosBuckets && rep_age[m] < kAgeBuckets, "repeat bucket out of range");
  const size_t E = ext_items.size();
  require(ext_offsets.size() == tb + 1 && ext_offsets[0] == 0 && ext_offsets[tb] == static_cast<int32_t>(E) &&
              ext_occ_offsets.size() == E + 1 && ext_occ_offsets[0] == 0 &&
              ext_occ_offsets[E] == static_cast<int32_t>(ext_pos.size()) && ext_pos.size() == ext_age.size(),
          "extra column arrays do not match the window");
  for (size_t i = 0; i < tb; ++i)  // all offsets checked before any is used
    require(ext_offsets[i] <= ext_offsets[i + 1] && ext_offsets[i + 1] - ext_offsets[i] <= kMaxExtras,
            "extra column offsets must be non-decreasing, at most " + std::to_string(kMaxExtras) + " per step");
  for (size_t i = 0; i < tb; ++i) {
    for (int32_t e = ext_offsets[i]; e < ext_offsets[i + 1]; ++e)
      require(ext_items[e] >= 0 && ext_items[e] < n_items && ext_items[e] != targets[i],
              "extra column item out of range or equal to the target: " + std::to_string(ext_items[e]));
  }
  for (size_t e = 0; e < E; ++e)
    require(ext_occ_offsets[e] <= ext_occ_offsets[e + 1], "extra occurrence offsets must be non-decreasing");
  for (size_t m = 0; m < ext_pos.size(); ++m)
    require(ext_pos[m] < kPosBuckets && ext_age[m] < kAgeBuckets, "repeat bucket out of range");
}

void SparseGrad::reset(int64_t n_items, int width_) {
  width = width_;
  if (slot_of.size() != static_cast<size_t>(n_items)) slot_of.assign(n_items, -1);
  clear();
}

void SparseGrad::clear() {
  for (int32_t item : rows) slot_of[item] = -1;
  rows.clear();
}

void SparseGrad::touch(int32_t item) {
  if (slot_of[item] >= 0) return;
  slot_of[item] = static_cast<int32_t>(rows.size());
  rows.push_back(item);
}

void Gradients::reset(const Params& P) {
  if (dense.u0.size() != static_cast<size_t>(P.H)) dense.resize(P.H);
  emb.reset(P.n_items, P.H);
  out.reset(P.n_items, P.H + 1);
}

const float* WindowEngine::cache_at(int t, int b) const {
  return cache_.data() + (static_cast<int64_t>(t) * B_ + b) * StepCache::floats(H_);
}
const float* WindowEngine::u_at(int t, int b) const { return cache_at(t, b) + StepCache::U * H_; }
const float* WindowEngine::h_at(int t, int b) const { return cache_at(t, b) + StepCache::Hout * H_; }

WindowResult WindowEngine::run(const Params& P, const Window& w, const float* logq,
                               const WindowConfig& cfg, Gradients& g) {
  const int H = P.H, T = w.T, B = w.B, S = w.S, C = B + S;
  const int64_t TB = static_cast<int64_t>(T) * B;
  H_ = H, B_ = B;
  require(w.u_init.size() == static_cast<size_t>(B) * H && w.h_init.size() == w.u_init.size(),
          "window initial states do not match the hidden dimension");
  require(cfg.dropout >= 0.f && cfg.dropout < 1.f, "dropout must be in [0, 1)");
  const int nt = std::max(1, std::min(resolve_threads(cfg.num_threads), B));

  // Serial bookkeeping: which table rows this window touches, and how many targets it has.
  g.reset(P);
  int64_t n_targets = 0;
  for (int64_t i = 0; i < TB; ++i) {
    if (w.items[i] >= 0) g.emb.touch(w.items[i]);
    if (w.items[i] >= 0 && w.targets[i] >= 0) {
      g.out.touch(w.targets[i]);
      ++n_targets;
    }
  }
  for (int32_t n : w.negatives) g.out.touch(n);
  for (int32_t e : w.ext_items) g.out.touch(e);
  g.emb.zero_grads();
  g.out.zero_grads();
  g.dense.zero();

  const size_t cf = StepCache::floats(H);
  const int Hp = pad_to_gemm(H), Cp = pad_to_gemm(C), Rs = Cp + kMaxExtras;
  cache_.resize(TB * cf);
  dh_loss_.assign(TB * H, 0.f);
  dx_.resize(TB * H);
  hout_.assign(TB * Hp, 0.f);
  mask_.assign(static_cast<size_t>(B) * H, 1.f);
  R_.resize(static_cast<size_t>(B) * Rs);
  dl_.resize(static_cast<size_t>(B) * Rs);
  dhout_.resize(static_cast<size_t>(B) * Hp);
  ext_g_.assign(w.ext_items.size(), 0.f);
  col_items_.assign(static_cast<size_t>(T) * Cp, -1);
  for (int t = 0; t < T; ++t) {  // the candidate columns of every step
    int32_t* col = col_items_.data() + static_cast<int64_t>(t) * Cp;
    std::copy_n(w.targets.data() + static_cast<int64_t>(t) * B, B, col);
    std::copy_n(w.negatives.data() + static_cast<int64_t>(t) * S, S, col + B);
  }
  dh_carry_.assign(static_cast<size_t>(B) * H, 0.f);
  du_carry_.assign(static_cast<size_t>(B) * H, 0.f);
  last_u_.resize(B);
  last_h_.resize(B);
  for (int b = 0; b < B; ++b) {
    last_u_[b] = w.u_init.data() + static_cast<int64_t>(b) * H;
    last_h_[b] = w.h_init.data() + static_cast<int64_t>(b) * H;
  }
  if (thread_grads_.size() < static_cast<size_t>(nt)) thread_grads_.resize(nt);
  if (thread_out_.size() < static_cast<size_t>(nt)) thread_out_.resize(nt);
  const size_t per_thread_scratch = 8 * H + static_cast<size_t>(Rs);
  scratch_.resize(per_thread_scratch * nt);
  std::vector<double> loss_by_thread(nt, 0.0);

  const float scale_base = n_targets > 0 ? 1.f / static_cast<float>(n_targets) : 0.f;
  const float keep = 1.f - cfg.dropout;
  const float* out_rows = P.out_rows();

  // Each thread runs its own lanes through the whole window, with its own copy of each step's
  // candidate rows and its own output-layer gradient; the threads meet only twice per window (a
  // barrier per step would stall everyone whenever one thread is descheduled).
  parallel_team(nt, [&](int th, int team) {
    // Lanes [b0, b1) belong to this thread; table rows of item i to thread i % team (so that no two
    // threads ever add into the same gradient row).
    const int b0 = static_cast<int>(static_cast<int64_t>(B) * th / team);
    const int b1 = static_cast<int>(static_cast<int64_t>(B) * (th + 1) / team);
    Dense& gd = thread_grads_[th];
    if (gd.u0.size() != static_cast<size_t>(H)) gd.resize(H);
    gd.zero();
    OutputBuffers& ob = thread_out_[th];
    ob.oc.assign(static_cast<size_t>(Cp) * Hp, 0.f);
    ob.oct.assign(static_cast<size_t>(Hp) * Cp, 0.f);
    ob.cbias.resize(Cp);
    ob.clq.resize(Cp);
    ob.doc.assign(static_cast<size_t>(T) * Cp * Hp, 0.f);
    ob.dcb.assign(static_cast<size_t>(T) * Cp, 0.f);
    float* scratch = scratch_.data() + per_thread_scratch * th;
    uint8_t* inc = reinterpret_cast<uint8_t*>(scratch + 8 * H);  // Rs bytes fit in Rs floats
    double loss = 0.0;

    for (int t = 0; t < T; ++t) {
      const int32_t* col = col_items_.data() + static_cast<int64_t>(t) * Cp;
      bool any = false;
      for (int b = b0; b < b1; ++b) any |= w.items[static_cast<int64_t>(t) * B + b] >= 0;
      if (!any) continue;
      for (int c = 0; c < Cp; ++c) {  // the step's candidate rows, gathered and transposed
        const int32_t it = col[c];
        float* row = ob.oc.data() + static_cast<int64_t>(c) * Hp;
        const float* src = it >= 0 ? out_rows + static_cast<int64_t>(it) * H : nullptr;
        for (int k = 0; k < H; ++k) row[k] = src ? src[k] : 0.f;
        for (int k = 0; k < H; ++k) ob.oct[static_cast<int64_t>(k) * Cp + c] = row[k];
        ob.cbias[c] = it >= 0 ? P.bo[it] : 0.f;
        ob.clq[c] = it >= 0 && cfg.loss.logq ? logq[it] : 0.f;
      }
      float* hout = hout_.data() + static_cast<int64_t>(t) * B * Hp;
      for (int b = b0; b < b1; ++b) {
        const int64_t i = static_cast<int64_t>(t) * B + b;
        float* ho = hout + static_cast<int64_t>(b) * Hp;
        const int32_t item = w.items[i];
        if (item < 0) continue;
        float* cache = cache_.data() + i * cf;
        step_forward(P, P.E.data() + static_cast<int64_t>(item) * H, w.gaps[i], w.flags[i], last_u_[b],
                     last_h_[b], cache);
        last_u_[b] = cache + StepCache::U * H;
        last_h_[b] = cache + StepCache::Hout * H;
        if (w.targets[i] < 0) continue;
        std::copy(last_h_[b], last_h_[b] + H, ho);
        if (cfg.dropout > 0.f) {
          Rng rng(cfg.dropout_seed, t + 1, b + 1);
          float* mask = mask_.data() + static_cast<int64_t>(b) * H;
          for (int k = 0; k < H; ++k) {
            mask[k] = rng.uniformf() < keep ? 1.f / keep : 0.f;
            ho[k] *= mask[k];
          }
        }
      }
      gemm_nn(b1 - b0, Cp, Hp, hout + static_cast<int64_t>(b0) * Hp, Hp, ob.oct.data(), Cp,
              R_.data() + static_cast<int64_t>(b0) * Rs, Rs, false);
      for (int b = b0; b < b1; ++b) {
        const int64_t i = static_cast<int64_t>(t) * B + b;
        float* dlb = dl_.data() + static_cast<int64_t>(b) * Rs;
        if (w.items[i] < 0 || w.targets[i] < 0) {
          std::fill(dlb, dlb + Cp, 0.f);
          continue;
        }
        const int32_t y = w.targets[i];
        float* r = R_.data() + static_cast<int64_t>(b) * Rs;
        for (int c = 0; c < Cp; ++c) r[c] += ob.cbias[c];
        const float* ho = hout + static_cast<int64_t>(b) * Hp;
        float hv[kRepeatCols];
        repeat_projection(P, ho, hv);
        for (int32_t m = w.rep_offsets[i]; m < w.rep_offsets[i + 1]; ++m)
          r[b] += repeat_term(P, hv, w.rep_pos[m], w.rep_age[m]);
        const int32_t e0 = w.ext_offsets[i], ne = w.ext_offsets[i + 1] - e0;
        for (int e = 0; e < ne; ++e) {  // the lane's extra columns, scored as at inference
          const int32_t it = w.ext_items[e0 + e];
          float s = dot(ho, out_rows + static_cast<int64_t>(it) * H, H) + P.bo[it];
          for (int32_t m = w.ext_occ_offsets[e0 + e]; m < w.ext_occ_offsets[e0 + e + 1]; ++m)
            s += repeat_term(P, hv, w.ext_pos[m], w.ext_age[m]);
          r[Cp + e] = s;
        }
        const float scale = w.weights[i] * scale_base;
        float ce;
        if (cfg.loss.kind == LossKind::Softmax) {
          ce = softmax_row(Cp, r, ob.clq.data(), col, y, b, scale, dlb, ne);
        } else {
          for (int c = 0; c < Cp; ++c) inc[c] = col[c] >= 0 && (c == b || col[c] != y);
          std::fill(inc + Cp, inc + Cp + ne, uint8_t{1});
          ce = bpr_max_row(cfg.loss.bpreg, r, inc, Cp + ne, b, scale, dlb);
        }
        for (int e = 0; e < ne; ++e) ext_g_[e0 + e] = dlb[Cp + e];
        loss += w.weights[i] * ce;
      }
      gemm_nn(b1 - b0, Hp, Cp, dl_.data() + static_cast<int64_t>(b0) * Rs, Rs, ob.oc.data(), Hp,
              dhout_.data() + static_cast<int64_t>(b0) * Hp, Hp, false);
      for (int b = b0; b < b1; ++b) {
        const int64_t i = static_cast<int64_t>(t) * B + b;
        if (w.items[i] < 0 || w.targets[i] < 0) continue;
        float* src = dhout_.data() + static_cast<int64_t>(b) * Hp;
        const float* dlb = dl_.data() + static_cast<int64_t>(b) * Rs;
        const float* ho = hout + static_cast<int64_t>(b) * Hp;
        // The repeat terms' gradient: per occurrence O(1), through ghv[j] = d loss / d (h . rV[:, j]).
        float ghv[kRepeatCols] = {};
        auto repeat_grad = [&](float gv, int pos, int age_bucket) {
          gd.rc[pos] += gv;
          gd.rd[age_bucket] += gv;
          ghv[pos] += gv;
          ghv[kPosBuckets + age_bucket] += gv;
        };
        for (int32_t m = w.rep_offsets[i]; m < w.rep_offsets[i + 1]; ++m) repeat_grad(dlb[b], w.rep_pos[m], w.rep_age[m]);
        for (int32_t e = w.ext_offsets[i]; e < w.ext_offsets[i + 1]; ++e) {
          axpy(ext_g_[e], out_rows + static_cast<int64_t>(w.ext_items[e]) * H, src, H);
          for (int32_t m = w.ext_occ_offsets[e]; m < w.ext_occ_offsets[e + 1]; ++m)
            repeat_grad(ext_g_[e], w.ext_pos[m], w.ext_age[m]);
        }
        const float* V = P.d.rV.data();
        for (int k = 0; k < H; ++k) {
          float acc = 0.f;
          for (int j = 0; j < kRepeatCols; ++j) {
            gd.rV[k * kRepeatCols + j] += ghv[j] * ho[k];
            acc += ghv[j] * V[k * kRepeatCols + j];
          }
          src[k] += acc;
        }
        const float* mask = mask_.data() + static_cast<int64_t>(b) * H;
        float* dho = dh_loss_.data() + i * H;
        for (int k = 0; k < H; ++k) dho[k] = cfg.dropout > 0.f ? src[k] * mask[k] : src[k];
      }
      // This thread's lanes' share of the candidate rows' gradient (added up across threads below).
      float* dcb = ob.dcb.data() + static_cast<int64_t>(t) * Cp;
      gemm_tn(Cp, Hp, b1 - b0, dl_.data() + static_cast<int64_t>(b0) * Rs, Rs, hout + static_cast<int64_t>(b0) * Hp,
              Hp, ob.doc.data() + static_cast<int64_t>(t) * Cp * Hp, Hp, false);
      for (int b = b0; b < b1; ++b) axpy(1.f, dl_.data() + static_cast<int64_t>(b) * Rs, dcb, Cp);
    }

    for (int t = T - 1; t >= 0; --t) {
      for (int b = b0; b < b1; ++b) {
        const int64_t i = static_cast<int64_t>(t) * B + b;
        const int32_t item = w.items[i];
        if (item < 0) continue;
        float* dh = dh_carry_.data() + static_cast<int64_t>(b) * H;
        float* du = du_carry_.data() + static_cast<int64_t>(b) * H;
        axpy(1.f, dh_loss_.data() + i * H, dh, H);
        step_backward(P, P.E.data() + static_cast<int64_t>(item) * H, w.gaps[i], w.flags[i],
                      cache_.data() + i * cf, dh, du, dx_.data() + i * H, gd, scratch);
      }
    }
#pragma omp barrier
    for (int t = 0; t < T; ++t) {
      const int32_t* col = col_items_.data() + static_cast<int64_t>(t) * Cp;
      for (int c = 0; c < C; ++c) {
        const int32_t it = col[c];
        if (it < 0 || it % team != th) continue;
        float* gr = g.out.grad.data() + static_cast<int64_t>(g.out.slot_of[it]) * (H + 1);
        for (int s = 0; s < team; ++s) {
          const OutputBuffers& os = thread_out_[s];
          axpy(1.f, os.doc.data() + (static_cast<int64_t>(t) * Cp + c) * Hp, gr, H);
          gr[H] += os.dcb[static_cast<int64_t>(t) * Cp + c];
        }
      }
      for (int b = 0; b < B; ++b) {  // the extra columns' rows
        const int64_t i = static_cast<int64_t>(t) * B + b;
        if (w.items[i] < 0 || w.targets[i] < 0) continue;
        for (int32_t e = w.ext_offsets[i]; e < w.ext_offsets[i + 1]; ++e) {
          const int32_t it = w.ext_items[e];
          if (it % team != th) continue;
          float* gr = g.out.grad.data() + static_cast<int64_t>(g.out.slot_of[it]) * (H + 1);
          axpy(ext_g_[e], hout_.data() + i * Hp, gr, H);
          gr[H] += ext_g_[e];
        }
      }
    }
    for (int64_t i = 0; i < TB; ++i) {
      const int32_t item = w.items[i];
      if (item < 0 || item % team != th) continue;
      axpy(1.f, dx_.data() + i * H, g.emb.grad.data() + static_cast<int64_t>(g.emb.slot_of[item]) * H, H);
    }
    loss_by_thread[th] = loss;
  });

  // Dense gradients: the per-thread sums, added in thread order.
  for (int th = 0; th < nt; ++th) {
    std::vector<std::vector<float>*> dst, src;
    g.dense.for_each([&](const char*, std::vector<float>& v) { dst.push_back(&v); });
    thread_grads_[th].for_each([&](const char*, std::vector<float>& v) { src.push_back(&v); });
    for (size_t k = 0; k < dst.size(); ++k) axpy(1.f, src[k]->data(), dst[k]->data(), static_cast<int>(dst[k]->size()));
  }
  WindowResult res;
  for (double l : loss_by_thread) res.loss_sum += l;
  res.n_targets = n_targets;
  return res;
}

}  // namespace hrnn
