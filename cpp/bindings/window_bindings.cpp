// window_loss_grad: one training window's loss, states and gradients, for the equivalence and
// gradient tests against tests/reference.py; optimizer_steps: the optimizer alone, for its own.
#include <string>

#include "hrnn/recent_lists.h"
#include "window_convert.h"

namespace hrnn_py {

namespace {

// d[name] into dst, its shape checked against the block's (what the message calls `what`).
void read_block(const py::dict& d, const std::string& name, const hrnn::Params& P, std::vector<float>& dst,
                const char* what) {
  if (!d.contains(name.c_str())) throw std::invalid_argument(std::string(what) + " is missing '" + name + "'");
  auto a = d[name.c_str()].cast<Arr<float>>();
  auto shape = P.shape(name);
  const float* src = checked(a, std::vector<py::ssize_t>(shape.begin(), shape.end()), name);
  std::copy(src, src + dst.size(), dst.begin());
}

}  // namespace

hrnn::Params params_from_dict(const py::dict& d) {
  if (!d.contains("E")) throw std::invalid_argument("params must contain 'E'");
  auto E = d["E"].cast<Arr<float>>();
  if (E.ndim() != 2) throw std::invalid_argument("E must be 2-D");
  hrnn::Params P(E.shape(0), static_cast<int>(E.shape(1)), !d.contains("O"));
  for (const auto& name : P.names()) read_block(d, name, P, P.block(name), "params");
  return P;
}

namespace {

template <class T>
void fill(std::vector<T>& dst, const py::dict& w, const char* key, std::vector<py::ssize_t> shape) {
  if (!w.contains(key)) throw std::invalid_argument(std::string("window is missing '") + key + "'");
  auto a = w[key].cast<Arr<T>>();
  const T* src = checked(a, shape, key);
  dst.assign(src, src + a.size());
}

}  // namespace

hrnn::Window window_from_dict(const py::dict& w, const hrnn::Params& P, std::vector<float>& logq) {
  const int H = P.H;
  auto items = w["items"].cast<Arr<int32_t>>();
  auto negs = w["negatives"].cast<Arr<int32_t>>();
  if (items.ndim() != 2 || negs.ndim() != 2) throw std::invalid_argument("items and negatives must be 2-D");
  const int T = static_cast<int>(items.shape(0)), B = static_cast<int>(items.shape(1));
  const int S = static_cast<int>(negs.shape(1));
  hrnn::Window win;
  win.resize(T, B, S, H);
  fill(win.items, w, "items", {T, B});
  fill(win.targets, w, "targets", {T, B});
  fill(win.gaps, w, "gaps", {T, B});
  fill(win.weights, w, "weights", {T, B});
  fill(win.negatives, w, "negatives", {T, S});
  fill(win.u_init, w, "u_init", {B, H});
  fill(win.h_init, w, "h_init", {B, H});
  std::vector<uint8_t> fresh, news;
  fill(fresh, w, "fresh", {T, B});
  fill(news, w, "new_session", {T, B});
  for (size_t i = 0; i < fresh.size(); ++i) win.flags[i] = (fresh[i] ? 1 : 0) | (news[i] ? 2 : 0);
  fill(logq, w, "logq", {P.n_items});
  if (w.contains("rep_offsets")) {
    fill(win.rep_offsets, w, "rep_offsets", {static_cast<py::ssize_t>(T) * B + 1});
    fill(win.rep_pos, w, "rep_pos", {-1});
    fill(win.rep_age, w, "rep_age", {-1});
  }
  if (w.contains("ext_offsets")) {
    fill(win.ext_offsets, w, "ext_offsets", {static_cast<py::ssize_t>(T) * B + 1});
    fill(win.ext_items, w, "ext_items", {-1});
    fill(win.ext_occ_offsets, w, "ext_occ_offsets", {-1});
    fill(win.ext_pos, w, "ext_pos", {-1});
    fill(win.ext_age, w, "ext_age", {-1});
  }
  win.validate(P.n_items);
  return win;
}

hrnn::OptConfig opt_config(const std::string& optimizer, float learning_rate, float momentum) {
  hrnn::OptConfig c;
  if (optimizer == "adagrad") c.kind = hrnn::OptKind::Adagrad;
  else if (optimizer == "adam") c.kind = hrnn::OptKind::Adam;
  else throw std::invalid_argument("optimizer must be 'adagrad' or 'adam', got '" + optimizer + "'");
  c.lr = learning_rate, c.momentum = momentum;
  if (c.kind == hrnn::OptKind::Adam) c.eps = 1e-8f;
  return c;
}

hrnn::WindowConfig window_config(const std::string& loss, bool logq, float bpreg, float dropout, int num_threads) {
  hrnn::WindowConfig cfg;
  if (loss == "softmax") cfg.loss.kind = hrnn::LossKind::Softmax;
  else if (loss == "bpr-max") cfg.loss.kind = hrnn::LossKind::BprMax;
  else throw std::invalid_argument("loss must be 'softmax' or 'bpr-max', got '" + loss + "'");
  cfg.loss.logq = logq;
  cfg.loss.bpreg = bpreg;
  cfg.dropout = dropout;
  cfg.num_threads = num_threads;
  return cfg;
}

py::dict window_outputs(const hrnn::Params& P, const hrnn::Window& win, const hrnn::WindowResult& res,
                        const float* u_states, const float* h_states, const hrnn::Dense& dense, const float* gE,
                        const float* gO, const float* gb) {
  const int T = win.T, B = win.B, H = P.H;
  py::dict grads;
  dense.for_each([&](const char* name, const std::vector<float>& v) {
    auto shape = P.shape(name);
    grads[name] = copy_out(v.data(), std::vector<py::ssize_t>(shape.begin(), shape.end()));
  });
  const py::ssize_t N = P.n_items;
  grads["E"] = copy_out(gE, {N, H});
  if (!P.tied) grads["O"] = copy_out(gO, {N, H});
  grads["bo"] = copy_out(gb, {N});
  py::dict out;
  out["loss"] = res.n_targets > 0 ? res.loss_sum / res.n_targets : 0.0;
  out["h"] = copy_out(h_states, {T, B, H});
  out["u"] = copy_out(u_states, {T, B, H});
  out["grads"] = grads;
  return out;
}

namespace {

py::dict window_loss_grad(const py::dict& params, const py::dict& w, const std::string& loss, bool logq,
                          float bpreg, float dropout, int num_threads) {
  hrnn::Params P = params_from_dict(params);
  std::vector<float> lq;
  hrnn::Window win = window_from_dict(w, P, lq);
  const hrnn::WindowConfig cfg = window_config(loss, logq, bpreg, dropout, num_threads);

  hrnn::WindowEngine engine;
  hrnn::Gradients g;
  hrnn::WindowResult res;
  {
    py::gil_scoped_release release;
    res = engine.run(P, win, lq.data(), cfg, g);
  }
  const int T = win.T, B = win.B, H = P.H;
  std::vector<float> u(static_cast<size_t>(T) * B * H), h(u.size());
  for (int b = 0; b < B; ++b) {  // an inactive lane carries its state
    const float* uc = win.u_init.data() + static_cast<int64_t>(b) * H;
    const float* hc = win.h_init.data() + static_cast<int64_t>(b) * H;
    for (int t = 0; t < T; ++t) {
      if (win.items[static_cast<size_t>(t) * B + b] >= 0) uc = engine.u_at(t, b), hc = engine.h_at(t, b);
      std::copy(uc, uc + H, u.begin() + (static_cast<int64_t>(t) * B + b) * H);
      std::copy(hc, hc + H, h.begin() + (static_cast<int64_t>(t) * B + b) * H);
    }
  }
  const int64_t N = P.n_items;
  std::vector<float> gE(static_cast<size_t>(N) * H, 0.f), gO(P.tied ? 0 : gE.size(), 0.f), gb(N, 0.f);
  for (int64_t i = 0; i < N; ++i) {
    if (const float* r = g.emb.row(i)) std::copy(r, r + H, gE.begin() + i * H);
    if (const float* r = g.out.row(i)) {
      float* dst = (P.tied ? gE.data() : gO.data()) + i * H;
      for (int k = 0; k < H; ++k) dst[k] += r[k];
      gb[i] = r[H];
    }
  }
  return window_outputs(P, win, res, u.data(), h.data(), g.dense, gE.data(), gO.data(), gb.data());
}

// The recent lists the trainer builds for a window whose steps are at the given events (the
// planner's lanes: start[t, b] = the user's first event, pos[t, b] = the current one, -1 = none).
py::dict recent_lists(const Arr<int32_t>& items, const Arr<double>& timestamps, const Arr<int64_t>& start,
                      const Arr<int64_t>& pos, bool negatives, int num_threads) {
  const py::ssize_t n = items.size();
  const int32_t* it = checked(items, {-1}, "items");
  const double* ts = checked(timestamps, {n}, "timestamps");
  const int64_t* p = checked(pos, {-1, -1}, "pos");
  const int64_t* s = checked(start, {pos.shape(0), pos.shape(1)}, "start");
  for (py::ssize_t i = 0; i < pos.size(); ++i)
    if (p[i] != -1 && !(0 <= s[i] && s[i] <= p[i] && p[i] + 1 < n))
      throw std::invalid_argument("step " + std::to_string(i) + ": needs 0 <= start <= pos < len(items) - 1");
  for (py::ssize_t j = 0; j < n; ++j)
    if (it[j] < -1) throw std::invalid_argument("items must be >= -1");
  hrnn::Window w;
  w.resize(static_cast<int>(pos.shape(0)), static_cast<int>(pos.shape(1)), 0, 0);
  {
    py::gil_scoped_release release;
    hrnn::RecentLists().build(it, ts, s, p, true, negatives, num_threads, w);
  }
  py::dict d;
  auto out = [&](const char* key, const auto& v) {
    d[key] = copy_out(v.data(), {static_cast<py::ssize_t>(v.size())});
  };
  out("rep_offsets", w.rep_offsets);
  out("rep_pos", w.rep_pos);
  out("rep_age", w.rep_age);
  out("ext_offsets", w.ext_offsets);
  out("ext_items", w.ext_items);
  out("ext_occ_offsets", w.ext_occ_offsets);
  out("ext_pos", w.ext_pos);
  out("ext_age", w.ext_age);
  return d;
}

// One step's sparse gradient: rows [r] (distinct items) and their gradients [r, width].
void sparse_from_dict(hrnn::SparseGrad& sg, const py::dict& step, const char* rows_key, const char* grad_key,
                      int64_t n_items) {
  if (!step.contains(rows_key) || !step.contains(grad_key))
    throw std::invalid_argument(std::string("a step must contain '") + rows_key + "' and '" + grad_key + "'");
  auto rows = step[rows_key].cast<Arr<int32_t>>();
  auto grad = step[grad_key].cast<Arr<float>>();
  const int32_t* r = checked(rows, {-1}, rows_key);
  const float* g = checked(grad, {rows.shape(0), sg.width}, grad_key);
  for (py::ssize_t s = 0; s < rows.shape(0); ++s) {
    if (r[s] < 0 || r[s] >= n_items || sg.slot_of[r[s]] >= 0)
      throw std::invalid_argument(std::string(rows_key) + " must be distinct items in [0, n_items)");
    sg.touch(r[s]);
  }
  sg.grad.assign(g, g + grad.size());
}

// The parameters after Optimizer::step with each of `steps` in turn (one optimizer, its state kept).
py::dict optimizer_steps(const py::dict& params, const py::list& steps, const std::string& optimizer,
                         float learning_rate, float momentum, int num_threads) {
  hrnn::Params P = params_from_dict(params);
  hrnn::Optimizer opt(P, opt_config(optimizer, learning_rate, momentum));
  hrnn::Gradients g;
  for (const auto& item : steps) {
    const auto step = item.cast<py::dict>();
    g.reset(P);
    g.dense.for_each([&](const char* name, std::vector<float>& v) { read_block(step, name, P, v, "a step"); });
    sparse_from_dict(g.emb, step, "E_rows", "E_grad", P.n_items);
    sparse_from_dict(g.out, step, "out_rows", "out_grad", P.n_items);
    py::gil_scoped_release release;
    opt.step(P, g, num_threads);
  }
  py::dict out;
  for (const auto& name : P.names()) {
    auto shape = P.shape(name);
    out[name.c_str()] = copy_out(P.block(name).data(), std::vector<py::ssize_t>(shape.begin(), shape.end()));
  }
  return out;
}

}  // namespace

void bind_window(py::module_& m) {
  m.def("recent_lists", &recent_lists, py::arg("items"), py::arg("timestamps"), py::arg("start"), py::arg("pos"),
        py::arg("negatives") = true, py::arg("num_threads") = 1,
        "A training window's recent lists (rep_* and ext_* arrays, docs/engine.md) for steps [T, B] at the "
        "given events.");
  m.def("window_loss_grad", &window_loss_grad, py::arg("params"), py::arg("window"), py::arg("loss") = "softmax",
        py::arg("logq") = true, py::arg("bpreg") = 1.0f, py::arg("dropout") = 0.0f, py::arg("num_threads") = 1,
        "Loss, states and gradients of one training window (docs/engine.md).");
  m.def("optimizer_steps", &optimizer_steps, py::arg("params"), py::arg("steps"), py::arg("optimizer") = "adagrad",
        py::arg("learning_rate") = 0.05f, py::arg("momentum") = 0.0f, py::arg("num_threads") = 1,
        "The parameters after one optimizer step per entry of steps: the dense blocks' gradients by name, "
        "E_rows / E_grad [r, H] (input rows) and out_rows / out_grad [s, H + 1] (output rows and their bias).");
}

}  // namespace hrnn_py
