#include "hrnn/window.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "hrnn/errors.h"
#include "hrnn/gemm.h"
#include "hrnn/kernels.h"
#include "hrnn/lane_block.h"
#include "hrnn/memory.h"
#include "hrnn/parallel.h"
#include "hrnn/repeat.h"
#include "hrnn/rng.h"

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

const float* WindowEngine::u_at(int t, int b) const { return blocks_[lane_block_[b]].u(t, b); }
const float* WindowEngine::h_at(int t, int b) const { return blocks_[lane_block_[b]].h(t, b); }

namespace {
// Refuses a window whose buffers could never fit in this machine's memory (batch_size and n_sample
// are each within range, but the logit buffers grow with their product): a clear error instead of
// std::bad_alloc half-way, or the OOM killer once the zero-filled pages are touched.
void check_window_memory(int T, int B, int S, int H, int Hp, int Rs, int Cp) {
  // The logits and their gradients, the two candidate buffers, and the lane blocks' ~34 state rows.
  const double floats = 2.0 * B * Rs + 6.0 * Cp * Hp + 34.0 * T * B * Hp;
  const double bytes = 4.0 * floats;
  const double physical = physical_memory();
  if (physical > 0 && bytes > physical) {
    const auto gb = [](double b) { return std::to_string(static_cast<int64_t>(b / 1e9 + 0.5)); };
    invalid("batch_size " + std::to_string(B) + " with n_sample " + std::to_string(S) + " (bptt " +
            std::to_string(T) + ", hidden_dimension " + std::to_string(H) + ") needs about " + gb(bytes) +
            " GB of training buffers, more than this machine's " + gb(physical) +
            " GB of memory: lower batch_size or n_sample");
  }
}

// The blocks first, first + step, ... below stop, for a range-for.
struct BlockRange {
  int first, step, stop;
  struct It {
    int p, step;
    int operator*() const { return p; }
    It& operator++() {
      p += step;
      return *this;
    }
    bool operator!=(const It& o) const { return p < o.p; }
  };
  It begin() const { return {first, step}; }
  It end() const { return {stop, step}; }
};
}  // namespace

WindowResult WindowEngine::run(const Params& P, const Window& w, const float* logq,
                               const WindowConfig& cfg, Gradients& g) {
  const int H = P.H, T = w.T, B = w.B, S = w.S, C = B + S;
  const int64_t TB = static_cast<int64_t>(T) * B;
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
  g.emb.size_grads();  // zeroed in the parallel region, each row by the thread that owns it
  g.out.size_grads();
  g.dense.zero();

  const int Hp = pad_to_gemm(H), Cp = pad_to_gemm(C), Rs = Cp + kMaxExtras;
  check_window_memory(T, B, S, H, Hp, Rs, Cp);
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
  last_u_.resize(B);
  last_h_.resize(B);
  for (int b = 0; b < B; ++b) {
    last_u_[b] = w.u_init.data() + static_cast<int64_t>(b) * H;
    last_h_[b] = w.h_init.data() + static_cast<int64_t>(b) * H;
  }
  // Lanes are split into nt blocks, lanes [B*p/nt, B*(p+1)/nt) in block p; everything is sized here,
  // outside the parallel region.
  packed_.pack(P.d, H);
  if (blocks_.size() < static_cast<size_t>(nt)) blocks_.resize(nt);
  lane_block_.resize(B);
  auto block_lanes = [&](int p) {
    return std::make_pair(static_cast<int>(static_cast<int64_t>(B) * p / nt),
                          static_cast<int>(static_cast<int64_t>(B) * (p + 1) / nt));
  };
  for (int p = 0; p < nt; ++p) {
    const auto [b0, b1] = block_lanes(p);
    blocks_[p].allocate(T, b0, b1, H);
    for (int b = b0; b < b1; ++b) lane_block_[b] = p;
  }
  if (thread_grads_.size() < static_cast<size_t>(nt)) thread_grads_.resize(nt);
  for (int th = 0; th < nt; ++th) {
    Dense& gd = thread_grads_[th];
    if (gd.u0.size() != static_cast<size_t>(H)) gd.resize(H);
  }
  for (Candidates& cd : cand_) {
    cd.oc.assign(static_cast<size_t>(Cp) * Hp, 0.f);
    cd.oct.assign(static_cast<size_t>(Hp) * Cp, 0.f);
    cd.cbias.resize(Cp);
    cd.clq.resize(Cp);
    cd.doc.resize(static_cast<size_t>(Cp) * Hp);
    cd.dcb.resize(Cp);
  }
  first_col_.resize(static_cast<size_t>(T) * Cp);
  if (col_seen_.size() < static_cast<size_t>(nt)) col_seen_.resize(nt);
  for (int th = 0; th < nt; ++th) {
    col_seen_[th].stamp.assign(g.out.rows.size(), -1);
    col_seen_[th].first.resize(g.out.rows.size());
  }
  inc_.resize(static_cast<size_t>(Rs) * nt);
  // Each lane's distinct extra items (see lane_ext_), in parallel: they are known before the window runs.
  if (ext_seen_.size() < static_cast<size_t>(nt)) ext_seen_.resize(nt);
  for (int th = 0; th < nt; ++th) {
    ext_seen_[th].stamp.assign(g.out.rows.size(), -1);
    ext_seen_[th].first.resize(g.out.rows.size());
  }
  lane_ext_.resize(B);
  ext_local_.resize(w.ext_items.size());
  parallel_for(B, nt, [&](int64_t b) {
    ColumnsSeen& seen = ext_seen_[thread_id()];
    LaneExtras& lx = lane_ext_[b];
    lx.items.clear();
    for (int t = 0; t < T; ++t) {
      const int64_t i = static_cast<int64_t>(t) * B + b;
      if (w.items[i] < 0 || w.targets[i] < 0) continue;
      for (int32_t e = w.ext_offsets[i]; e < w.ext_offsets[i + 1]; ++e) {
        const int32_t slot = g.out.slot_of[w.ext_items[e]];
        if (seen.stamp[slot] != b) {
          seen.stamp[slot] = static_cast<int32_t>(b);
          seen.first[slot] = static_cast<int32_t>(lx.items.size());
          lx.items.push_back(w.ext_items[e]);
        }
        ext_local_[e] = seen.first[slot];
      }
    }
    const size_t U = lx.items.size();
    lx.g.assign(U * T, 0.f);
    lx.rows.resize(U * Hp);
    lx.bias.assign(U, 0.f);
  });
  std::vector<double> loss_by_thread(nt, 0.0);

  const float scale_base = n_targets > 0 ? 1.f / static_cast<float>(n_targets) : 0.f;
  const float keep = 1.f - cfg.dropout;
  const float* out_rows = P.out_rows();

  std::vector<uint8_t> step_active(T, 0);
  for (int64_t i = 0; i < TB; ++i) step_active[i / B] |= w.items[i] >= 0;

  // Each thread runs its blocks of lanes through the window, and owns a range of each step's
  // candidate columns: it gathers their rows, computes their gradients from every lane's logit
  // gradients, and (at the next step) adds those into the table rows. The threads meet twice per step.
  parallel_team(nt, [&](int th, int team) {
    // Blocks th, th + team, ... belong to this thread (all of them when the runtime gave fewer threads
    // than asked). Nothing in the region may throw: a thread that left early would leave the others
    // waiting at the next barrier.
    const BlockRange mine{th, team, nt};
    Dense& gd = thread_grads_[th];
    gd.zero();
    uint8_t* inc = inc_.data() + static_cast<size_t>(Rs) * th;
    double loss = 0.0;
    for (size_t slot = 0; slot < g.out.rows.size(); ++slot)  // before the first step's barrier
      if (g.out.rows[slot] % team == th) g.out.zero_row(slot);
    for (int p : mine) blocks_[p].start(P, packed_, w);
    // An item can fill several columns of a step; the gradient of each goes into its row through
    // the thread that computed the gradient of the item's first column (so that no two threads add
    // into a row). first_col_ of this thread's share of the steps, before the first barrier.
    ColumnsSeen& seen = col_seen_[th];
    for (int t = th; t < T; t += team) {
      const int32_t* col = col_items_.data() + static_cast<int64_t>(t) * Cp;
      int32_t* first = first_col_.data() + static_cast<int64_t>(t) * Cp;
      for (int c = 0; c < Cp; ++c) {
        if (col[c] < 0) {
          first[c] = -1;
          continue;
        }
        const int32_t slot = g.out.slot_of[col[c]];
        if (seen.stamp[slot] != t) seen.stamp[slot] = t, seen.first[slot] = c;
        first[c] = seen.first[slot];
      }
    }
    const int n_panels = Cp / kGemmAlign;  // this thread's columns: [c_lo, c_hi), whole panels
    const int c_lo = n_panels * th / team * kGemmAlign, c_hi = n_panels * (th + 1) / team * kGemmAlign;
    // Step s's candidate-row gradients into the table rows, for the items whose first column is ours.
    auto add_candidate_grads = [&](int s) {
      if (!step_active[s]) return;
      const int32_t* col = col_items_.data() + static_cast<int64_t>(s) * Cp;
      const int32_t* first = first_col_.data() + static_cast<int64_t>(s) * Cp;
      const Candidates& cd = cand_[s & 1];
      auto ours = [&](int c) { return first[c] >= c_lo && first[c] < c_hi; };
      for (int c = 0; c < C; ++c) {
        if (c + 8 < C && ours(c + 8))  // the rows are scattered over the table
          prefetch_row(g.out.grad.data() + static_cast<int64_t>(g.out.slot_of[col[c + 8]]) * (H + 1), H + 1);
        if (!ours(c)) continue;
        float* gr = g.out.grad.data() + static_cast<int64_t>(g.out.slot_of[col[c]]) * (H + 1);
        axpy(1.f, cd.doc.data() + static_cast<int64_t>(c) * Hp, gr, H);
        gr[H] += cd.dcb[c];
      }
    };

    for (int t = 0; t < T; ++t) {
      const int32_t* col = col_items_.data() + static_cast<int64_t>(t) * Cp;
      Candidates& cd = cand_[t & 1];
      bool any = false;
      for (int p : mine)
        for (int b = block_lanes(p).first; b < block_lanes(p).second; ++b)
          any |= w.items[static_cast<int64_t>(t) * B + b] >= 0;
      // This thread's panels of the step's candidate rows, gathered (fetching ahead: they are
      // scattered over the table) and transposed.
      for (int c0 = c_lo; step_active[t] && c0 < c_hi; c0 += kGemmAlign) {
        for (int c = c0; c < c0 + kGemmAlign; ++c) {
          if (c + kGemmAlign < Cp && col[c + kGemmAlign] >= 0)
            prefetch_row(out_rows + static_cast<int64_t>(col[c + kGemmAlign]) * H, H);
          const int32_t it = col[c];
          float* row = cd.oc.data() + static_cast<int64_t>(c) * Hp;
          if (it >= 0) std::memcpy(row, out_rows + static_cast<int64_t>(it) * H, sizeof(float) * H);
          else std::fill(row, row + H, 0.f);
          cd.cbias[c] = it >= 0 ? P.bo[it] : 0.f;
          // The softmax subtracts clq from the raw scores: the bias enters there.
          cd.clq[c] = (it >= 0 && cfg.loss.logq ? logq[it] : 0.f) - cd.cbias[c];
        }
        for (int k = 0; k < H; ++k) {
          float* dst = cd.oct.data() + static_cast<int64_t>(k) * Cp + c0;
          for (int j = 0; j < kGemmAlign; ++j) dst[j] = cd.oc[static_cast<int64_t>(c0 + j) * Hp + k];
        }
      }
#pragma omp barrier
      if (t > 0) add_candidate_grads(t - 1);
      float* hout = hout_.data() + static_cast<int64_t>(t) * B * Hp;
      for (int p : mine) {
        const auto [b0, b1] = block_lanes(p);
        LaneBlock& lb = blocks_[p];
        lb.forward(P, packed_, w, t, last_u_.data(), last_h_.data());
        if (!any) {  // (the column gradients read every lane's logit gradients)
          for (int b = b0; b < b1; ++b) std::fill_n(dl_.data() + static_cast<int64_t>(b) * Rs, Cp, 0.f);
          continue;
        }
        for (int b = b0; b < b1; ++b) {
          const int64_t i = static_cast<int64_t>(t) * B + b;
          if (w.items[i] < 0 || w.targets[i] < 0) continue;
          float* ho = hout + static_cast<int64_t>(b) * Hp;
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
        gemm_nn(b1 - b0, Cp, Hp, hout + static_cast<int64_t>(b0) * Hp, Hp, cd.oct.data(), Cp,
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
            ce = softmax_row(Cp, r, cd.clq.data(), col, y, b, scale, dlb, ne);
          } else {
            for (int c = 0; c < Cp; ++c) r[c] += cd.cbias[c];
            for (int c = 0; c < Cp; ++c) inc[c] = col[c] >= 0 && (c == b || col[c] != y);
            std::fill(inc + Cp, inc + Cp + ne, uint8_t{1});
            ce = bpr_max_row(cfg.loss.bpreg, r, inc, Cp + ne, b, scale, dlb);
          }
          for (int e = 0; e < ne; ++e) ext_g_[e0 + e] = dlb[Cp + e];
          loss += w.weights[i] * ce;
        }
        gemm_nn(b1 - b0, Hp, Cp, dl_.data() + static_cast<int64_t>(b0) * Rs, Rs, cd.oc.data(), Hp,
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
          for (int32_t m = w.rep_offsets[i]; m < w.rep_offsets[i + 1]; ++m)
            repeat_grad(dlb[b], w.rep_pos[m], w.rep_age[m]);
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
          float* dho = lb.dh_loss(t, b);
          for (int k = 0; k < H; ++k) dho[k] = cfg.dropout > 0.f ? src[k] * mask[k] : src[k];
        }
      }
#pragma omp barrier
      if (step_active[t]) {  // our columns' gradients, from every lane
        gemm_tn(c_hi - c_lo, Hp, B, dl_.data() + c_lo, Rs, hout, Hp, cd.doc.data() + static_cast<int64_t>(c_lo) * Hp,
                Hp, false);
        std::fill(cd.dcb.begin() + c_lo, cd.dcb.begin() + c_hi, 0.f);
        for (int b = 0; b < B; ++b)
          axpy(1.f, dl_.data() + static_cast<int64_t>(b) * Rs + c_lo, cd.dcb.data() + c_lo, c_hi - c_lo);
      }
    }

    for (int p : mine) {
      for (int t = T - 1; t >= 0; --t) blocks_[p].backward(packed_, w, t, gd);
      blocks_[p].finish(packed_, gd);
      for (int b = block_lanes(p).first; b < block_lanes(p).second; ++b) {  // the lane's extra rows
        LaneExtras& lx = lane_ext_[b];
        const int U = static_cast<int>(lx.items.size());
        if (U == 0) continue;
        for (int t = 0; t < T; ++t) {
          const int64_t i = static_cast<int64_t>(t) * B + b;
          if (w.items[i] < 0 || w.targets[i] < 0) continue;
          for (int32_t e = w.ext_offsets[i]; e < w.ext_offsets[i + 1]; ++e) {
            lx.g[static_cast<int64_t>(ext_local_[e]) * T + t] += ext_g_[e];
            lx.bias[ext_local_[e]] += ext_g_[e];
          }
        }
        gemm_nn(U, Hp, T, lx.g.data(), T, hout_.data() + static_cast<int64_t>(b) * Hp,
                static_cast<int>(static_cast<int64_t>(B) * Hp), lx.rows.data(), Hp, false);
      }
    }
#pragma omp barrier
    if (T > 0) add_candidate_grads(T - 1);
#pragma omp barrier  // (the extra columns' rows below may be rows of step T - 1's columns)
    for (size_t slot = 0; slot < g.emb.rows.size(); ++slot)
      if (g.emb.rows[slot] % team == th) g.emb.zero_row(slot);
    for (int b = 0; b < B; ++b) {
      const LaneExtras& lx = lane_ext_[b];
      for (size_t u = 0; u < lx.items.size(); ++u) {
        const int32_t it = lx.items[u];
        if (it % team != th) continue;
        float* gr = g.out.grad.data() + static_cast<int64_t>(g.out.slot_of[it]) * (H + 1);
        axpy(1.f, lx.rows.data() + u * Hp, gr, H);
        gr[H] += lx.bias[u];
      }
    }
    for (int64_t i = 0; i < TB; ++i) {
      const int32_t item = w.items[i];
      if (item < 0 || item % team != th) continue;
      const int t = static_cast<int>(i / B), b = static_cast<int>(i % B);
      axpy(1.f, blocks_[lane_block_[b]].dx(t, b),
           g.emb.grad.data() + static_cast<int64_t>(g.emb.slot_of[item]) * H, H);
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
