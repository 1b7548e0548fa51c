// The Engine class: parameters, training epochs and user states, called with the GIL released.
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <optional>
#include <string>

#include "window_convert.h"
#include "hrnn/advance.h"
#include "hrnn/engine.h"
#include "hrnn/errors.h"
#include "hrnn/ranking.h"
#include "hrnn/step.h"

namespace hrnn_py {
namespace {

struct EventBuffers {  // keeps the numpy arrays alive while the core reads them
  Arr<int64_t> offsets;
  Arr<int32_t> items;
  Arr<double> timestamps;
  Arr<uint8_t> new_session;
  hrnn::EventArrays view() const {
    hrnn::EventArrays ev;
    ev.n_users = offsets.size() - 1;
    ev.n_events = items.size();
    ev.offsets = offsets.data();
    ev.items = items.data();
    ev.timestamps = timestamps.data();
    ev.new_session = new_session.data();
    return ev;
  }
};

EventBuffers events(const Arr<int64_t>& offsets, const Arr<int32_t>& items, const Arr<double>& ts,
                    const Arr<uint8_t>& new_session) {
  if (offsets.ndim() != 1 || offsets.size() < 1) throw std::invalid_argument("offsets must be 1-D and non-empty");
  const py::ssize_t n = items.size();
  checked(items, {n}, "items");
  checked(ts, {n}, "timestamps");
  checked(new_session, {n}, "new_session");
  return {offsets, items, ts, new_session};
}

hrnn::TrainConfig train_config(int batch_size, int bptt, int n_sample, double sample_alpha,
                               const std::string& loss, bool logq, float bpreg, const std::string& optimizer,
                               float learning_rate, float momentum, float dropout, uint64_t seed,
                               int num_threads) {
  hrnn::TrainConfig c;
  c.batch_size = batch_size, c.bptt = bptt, c.n_sample = n_sample, c.sample_alpha = sample_alpha;
  if (loss == "softmax") c.loss.kind = hrnn::LossKind::Softmax;
  else if (loss == "bpr-max") c.loss.kind = hrnn::LossKind::BprMax;
  else throw std::invalid_argument("loss must be 'softmax' or 'bpr-max', got '" + loss + "'");
  c.loss.logq = logq, c.loss.bpreg = bpreg;
  c.opt = opt_config(optimizer, learning_rate, momentum);
  c.dropout = dropout, c.seed = seed, c.num_threads = num_threads;
  c.validate();
  return c;
}

hrnn::ScoreKernels score_kernels(const std::string& name) {
  if (name == "auto") return hrnn::ScoreKernels::Auto;
  if (name == "exact") return hrnn::ScoreKernels::Exact;
  if (name == "generic") return hrnn::ScoreKernels::Generic;
  if (name == "avx2") return hrnn::ScoreKernels::Avx2;
  if (name == "avx512") return hrnn::ScoreKernels::Avx512;
  throw std::invalid_argument("kernels must be 'auto', 'exact', 'generic', 'avx2' or 'avx512', got '" + name + "'");
}

// A query's arguments, with the exclude / include sets validated, sorted and deduplicated.
struct QueryArgs {
  hrnn::ItemSet ex, in;
  hrnn::Query q;
  QueryArgs(const hrnn::Engine& e, int k, bool exclude_interacted, const std::optional<Arr<int32_t>>& exclude,
            const std::optional<Arr<int32_t>>& include, const std::string& kernels) {
    q.k = k, q.exclude_interacted = exclude_interacted, q.kernels = score_kernels(kernels);
    auto sorted = [&](const Arr<int32_t>& a, hrnn::ItemSet& dst) {
      dst.assign(a.data(), a.data() + a.size());
      for (int32_t i : dst) hrnn::require(i >= 0 && i < e.params.n_items, "item index out of range");
      std::sort(dst.begin(), dst.end());
      dst.erase(std::unique(dst.begin(), dst.end()), dst.end());
    };
    if (exclude) sorted(*exclude, ex), q.exclude = &ex;
    if (include) sorted(*include, in), q.include = &in;
  }
  QueryArgs(const QueryArgs&) = delete;  // q points into ex and in
};

py::dict stats_dict(const hrnn::EpochStats& s) {
  py::dict d;
  d["loss"] = s.loss;
  d["events"] = s.events;
  d["windows"] = s.windows;
  d["interrupted"] = s.interrupted;
  return d;
}

bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

// An engine's users are freed without the GIL: a model dropped (say, replaced by a freshly loaded
// one in a service) frees every user's record, about 150 ms at 250,000 users, which every other
// Python thread would otherwise wait for. Only the engine's own memory is touched meanwhile; the
// engine itself is deleted with the GIL (and everything at interpreter exit).
struct EngineDeleter {
  void operator()(hrnn::Engine* e) const {
    if (e != nullptr && !finalizing()) {
      py::gil_scoped_release release;
      e->users.clear();
    }
    delete e;
  }
};

// f(name, array) for each array of a neighbour index (const or not), named as model files name them.
template <class Index, class F>
void neighbor_arrays(Index& nb, F&& f) {
  f("session_offsets", nb.session_offsets);
  f("session_items", nb.session_items);
  f("item_offsets", nb.item_offsets);
  f("item_sessions", nb.item_sessions);
  f("recency", nb.recency);
  f("own_session", nb.own_session);
  f("fit_events", nb.fit_events);
}

}  // namespace

void bind_engine(py::module_& m) {
  using hrnn::Engine;
  py::class_<Engine, std::unique_ptr<Engine, EngineDeleter>>(m, "Engine")
      .def(py::init<int64_t, int, bool, uint64_t>(), py::arg("n_items"), py::arg("hidden"), py::arg("tied"),
           py::arg("seed"))
      .def_property_readonly("n_items", [](const Engine& e) { return e.params.n_items; })
      .def_property_readonly("hidden", [](const Engine& e) { return e.params.H; })
      .def_property_readonly("tied", [](const Engine& e) { return e.params.tied; })
      .def("param_names", [](const Engine& e) { return e.params.names(); })
      .def("get_param",
           [](Engine& e, const std::string& name) {
             auto shape = e.params.shape(name);
             return copy_out(e.params.block(name).data(), std::vector<py::ssize_t>(shape.begin(), shape.end()));
           }, py::arg("name"))
      .def("set_param",
           [](Engine& e, const std::string& name, const Arr<float>& a) {
             auto shape = e.params.shape(name);
             const float* src = checked(a, std::vector<py::ssize_t>(shape.begin(), shape.end()), name);
             auto& dst = e.params.block(name);
             std::copy(src, src + dst.size(), dst.begin());
             e.params_changed();
           }, py::arg("name"), py::arg("value"))
      .def("start_training",
           [](Engine& e, const Arr<double>& popularity, int batch_size, int bptt, int n_sample, double sample_alpha,
              const std::string& loss, bool logq, float bpreg, const std::string& optimizer, float learning_rate,
              float momentum, float dropout, bool repeat, bool repeat_negatives, uint64_t seed, int num_threads) {
             const double* pop = checked(popularity, {e.params.n_items}, "popularity");
             auto cfg = train_config(batch_size, bptt, n_sample, sample_alpha, loss, logq, bpreg, optimizer,
                                     learning_rate, momentum, dropout, seed, num_threads);
             cfg.repeat = repeat;
             cfg.repeat_negatives = repeat_negatives;
             py::gil_scoped_release release;
             e.start_training(cfg, pop);
           },
           py::arg("popularity"), py::arg("batch_size"), py::arg("bptt"), py::arg("n_sample"),
           py::arg("sample_alpha"), py::arg("loss"), py::arg("logq"), py::arg("bpreg"), py::arg("optimizer"),
           py::arg("learning_rate"), py::arg("momentum"), py::arg("dropout"), py::arg("repeat"),
           py::arg("repeat_negatives"), py::arg("seed"),
           py::arg("num_threads"))
      .def("train_epoch",
           [](Engine& e, const Arr<int64_t>& offsets, const Arr<int32_t>& items, const Arr<double>& ts,
              const Arr<uint8_t>& new_session, const std::optional<Arr<float>>& weights, const Arr<int64_t>& users,
              const py::object& progress) {
             auto buf = events(offsets, items, ts, new_session);
             const float* w = weights ? checked(*weights, {items.size()}, "weights") : nullptr;
             std::vector<int64_t> us(users.data(), users.data() + users.size());
             // Between windows: look for Ctrl-C and report progress, at most every 0.1 s.
             auto last = std::chrono::steady_clock::now();
             std::exception_ptr pending_error;
             bool interrupted = false;
             auto should_stop = [&](const hrnn::EpochStats& s) {
               const auto now = std::chrono::steady_clock::now();
               if (now - last < std::chrono::milliseconds(100)) return false;
               last = now;
               py::gil_scoped_acquire gil;
               if (PyErr_CheckSignals() != 0) {
                 // Ctrl-C stops training cleanly; what another signal handler raised (SystemExit
                 // from a SIGTERM handler) is raised again once the epoch has stopped.
                 if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
                   interrupted = true;
                   PyErr_Clear();
                 } else {
                   pending_error = std::make_exception_ptr(py::error_already_set());
                 }
                 return true;
               }
               if (!progress.is_none()) {
                 try {
                   return py::cast<bool>(progress(stats_dict(s)));
                 } catch (...) {  // raised again below, once the epoch has stopped cleanly
                   pending_error = std::current_exception();
                   return true;
                 }
               }
               return false;
             };
             hrnn::EpochStats st;
             {
               py::gil_scoped_release release;
               st = e.train_epoch(buf.view(), w, us, should_stop);
             }
             if (pending_error) std::rethrow_exception(pending_error);
             auto d = stats_dict(st);
             d["keyboard_interrupt"] = interrupted;
             return d;
           },
           py::arg("offsets"), py::arg("items"), py::arg("timestamps"), py::arg("new_session"), py::arg("weights"),
           py::arg("users"), py::arg("progress") = py::none())
      .def("end_training", &Engine::end_training)
      .def_property_readonly("device",
                             [](const Engine& e) {
                               const auto a = e.accelerator();
                               return std::string(a ? a->name() : "cpu");
                             })
      .def("use_cpu", [](Engine& e) { e.set_accelerator(nullptr); },
           "Train and score on the CPU (the parameters are on the host either way).")
      .def_readwrite("session_gap", &Engine::session_gap)
      .def("compute_states",
           [](Engine& e, const Arr<int64_t>& offsets, const Arr<int32_t>& items, const Arr<double>& ts,
              const Arr<uint8_t>& new_session, int num_threads) {
             auto buf = events(offsets, items, ts, new_session);
             py::gil_scoped_release release;
             e.users.build(e.params, buf.view(), num_threads);
           },
           py::arg("offsets"), py::arg("items"), py::arg("timestamps"), py::arg("new_session"),
           py::arg("num_threads") = 0)
      .def("set_last_sessions",
           [](Engine& e, const Arr<int64_t>& sessions) {
             const int64_t n = sessions.size();
             const int64_t* p = sessions.data();
             py::gil_scoped_release release;
             e.users.set_last_sessions(p, n);
           },
           py::arg("sessions"))
      .def("n_users", [](const Engine& e) {
             py::gil_scoped_release release;  // (it waits while the store grows)
             return e.users.size();
           })
      .def("ensure_users",
           [](Engine& e, int64_t n) {
             py::gil_scoped_release release;
             e.users.ensure(e.params, n);
           }, py::arg("n"))
      .def("user_state",
           [](const Engine& e, int64_t user) {
             const py::ssize_t H = e.params.H;
             py::array_t<float> u(H), h(H);
             float *pu = u.mutable_data(), *ph = h.mutable_data();
             double last_ts;
             int64_t n_events;
             {
               py::gil_scoped_release release;  // (it may wait for a long put_events of this user)
               e.users.state(user, pu, ph, &last_ts, &n_events);
             }
             return py::make_tuple(u, h, last_ts, n_events);
           }, py::arg("user"))
      .def("put_events",
           [](Engine& e, int64_t user, const Arr<int32_t>& items, const Arr<double>& ts,
              const std::optional<Arr<int64_t>>& session) {
             const py::ssize_t n = items.size();
             checked(ts, {n}, "timestamps");
             const int64_t* sess = session ? checked(*session, {n}, "session_id") : nullptr;
             py::gil_scoped_release release;
             e.users.put_events(e.params, user, items.data(), ts.data(), sess, n, e.session_gap);
           },
           py::arg("user"), py::arg("items"), py::arg("timestamps"), py::arg("session") = py::none())
      .def("put_event",
           [](Engine& e, int64_t user, int32_t item, double timestamp) {
             py::gil_scoped_release release;
             e.users.put_events(e.params, user, &item, &timestamp, nullptr, 1, e.session_gap);
           },
           py::arg("user"), py::arg("item"), py::arg("timestamp"))
      .def("set_transitions",
           [](Engine& e, float weight, const Arr<int64_t>& offsets, const Arr<int32_t>& successors,
              const Arr<float>& counts, const Arr<float>& out, const Arr<double>& popularity,
              const Arr<float>& repeat_curve) {
             const py::ssize_t n = e.params.n_items, m = successors.size();
             const int64_t* off = checked(offsets, {n + 1}, "transition offsets");
             const int32_t* succ = checked(successors, {m}, "transition successors");
             const float* cnt = checked(counts, {m}, "transition counts");
             const float* o = checked(out, {n}, "transition totals");
             const double* pop = checked(popularity, {n}, "popularity");
             const float* q = checked(repeat_curve, {-1}, "repeat curve");
             std::vector<int64_t> off_v(off, off + n + 1);
             std::vector<int32_t> succ_v(succ, succ + m);
             std::vector<float> cnt_v(cnt, cnt + m), out_v(o, o + n), q_v(q, q + repeat_curve.size());
             py::gil_scoped_release release;
             e.set_transitions(weight, std::move(off_v), std::move(succ_v), std::move(cnt_v), std::move(out_v), pop,
                               std::move(q_v));
           },
           py::arg("weight"), py::arg("offsets"), py::arg("successors"), py::arg("counts"), py::arg("out"),
           py::arg("popularity"), py::arg("repeat_curve"))
      .def("get_transitions",
           [](const Engine& e) {
             const auto& t = e.transitions;
             auto array = [](const auto& v) { return copy_out(v.data(), {static_cast<py::ssize_t>(v.size())}); };
             py::dict d;
             d["weight"] = t.weight();
             d["offsets"] = array(t.offsets());
             d["successors"] = array(t.successors());
             d["counts"] = array(t.counts());
             d["out"] = array(t.out());
             d["repeat_curve"] = array(t.repeat_curve());
             return d;
           })
      .def("set_neighbors",
           [](Engine& e, const py::dict& d, int k, int sample_size, float beta) {
             hrnn::NeighborIndex nb;
             // One copy, whatever the alignment (a model file's sections are views at any offset).
             neighbor_arrays(nb, [&](const char* name, auto& dst) {
               using T = typename std::decay_t<decltype(dst)>::value_type;
               copy_bytes(dst, raw_array<T>(d[name], {-1}, name));
             });
             nb.k = k, nb.sample_size = sample_size, nb.beta = beta;
             py::gil_scoped_release release;
             nb.validate(e.params.n_items);
             e.neighbors = std::move(nb);
           },
           py::arg("index"), py::arg("k"), py::arg("sample_size"), py::arg("beta"))
      .def("clear_neighbors", [](Engine& e) { e.neighbors = hrnn::NeighborIndex{}; })
      .def("get_neighbors",
           [](const Engine& e) {
             const auto& nb = e.neighbors;
             py::dict d;
             neighbor_arrays(nb, [&](const char* name, const auto& v) {
               d[name] = copy_out(v.data(), {static_cast<py::ssize_t>(v.size())});
             });
             return py::make_tuple(d, nb.k, nb.sample_size, nb.beta);
           })
      .def("set_fallback_scores",
           [](Engine& e, const Arr<float>& s) {
             const float* p = checked(s, {e.params.n_items}, "fallback scores");
             e.set_fallback_scores(std::vector<float>(p, p + e.params.n_items));
           }, py::arg("scores"))
      .def("scoring_table_bytes", &Engine::scoring_table_bytes)
      .def("prepare_queries",
           [](const Engine& e, int num_threads) {
             py::gil_scoped_release release;
             e.prepare_queries(num_threads);
           }, py::arg("num_threads") = 0)
      .def("queries_prepared", &Engine::queries_prepared)
      .def("recommend",
           [](const Engine& e, int64_t user, int k, bool exclude_interacted,
              const std::optional<Arr<int32_t>>& exclude, const std::optional<Arr<int32_t>>& include,
              int num_threads, bool new_session) {
             QueryArgs a(e, k, exclude_interacted, exclude, include, "auto");
             const uint8_t flag = new_session;
             a.q.new_session = &flag;
             std::vector<int32_t> items(std::max(k, 0));
             std::vector<float> scores(items.size());
             {
               py::gil_scoped_release release;
               e.recommend_batch(&user, 1, a.q, items.data(), scores.data(), num_threads);
             }
             const auto n = static_cast<py::ssize_t>(std::find(items.begin(), items.end(), -1) - items.begin());
             return py::make_tuple(copy_out(items.data(), {n}), copy_out(scores.data(), {n}));
           },
           py::arg("user"), py::arg("k"), py::arg("exclude_interacted") = false, py::arg("exclude") = py::none(),
           py::arg("include") = py::none(), py::arg("num_threads") = 0, py::arg("new_session") = false)
      .def("recommend_batch",
           [](const Engine& e, const Arr<int64_t>& users, int k, bool exclude_interacted,
              const std::optional<Arr<int32_t>>& exclude, const std::optional<Arr<int32_t>>& include,
              int num_threads, const std::string& kernels, const std::optional<Arr<uint8_t>>& new_session) {
             const py::ssize_t n = users.size();
             QueryArgs a(e, k, exclude_interacted, exclude, include, kernels);
             if (new_session) a.q.new_session = checked(*new_session, {n}, "new_session");
             const hrnn::Query& q = a.q;
             py::array_t<int32_t> items({n, static_cast<py::ssize_t>(k)});
             py::array_t<float> scores({n, static_cast<py::ssize_t>(k)});
             int32_t* ip = items.mutable_data();
             float* sp = scores.mutable_data();
             const int64_t* up = users.data();
             {
               py::gil_scoped_release release;
               e.recommend_batch(up, n, q, ip, sp, num_threads);
             }
             return py::make_tuple(items, scores);
           },
           py::arg("users"), py::arg("k"), py::arg("exclude_interacted") = false, py::arg("exclude") = py::none(),
           py::arg("include") = py::none(), py::arg("num_threads") = 0, py::arg("kernels") = "auto",
           py::arg("new_session") = py::none())
      .def_property(
          "session_start_mix", [](const Engine& e) { return e.session_start_mix; },
          [](Engine& e, float mix) {
            hrnn::check_session_start_mix(mix);
            e.session_start_mix = mix;
          },
          "the session-start mix of the queries flagged new_session")
      .def_readwrite("session_start_sources", &Engine::session_start_sources,
                     "whether the queries flagged new_session keep the transition prior's sources")
      .def("dump_users",
           [](const Engine& e) {
             hrnn::UserArrays a;
             {
               py::gil_scoped_release release;
               a = e.users.dump();
             }
             const py::ssize_t n = a.n_users, H = a.H, m = static_cast<py::ssize_t>(a.history_items.size());
             py::dict d;
             d["U"] = move_out(std::move(a.U), {n, H});
             d["Hs"] = move_out(std::move(a.Hs), {n, H});
             d["last_ts"] = move_out(std::move(a.last_ts), {n});
             d["n_events"] = move_out(std::move(a.n_events), {n});
             d["last_session"] = move_out(std::move(a.last_session), {n});
             d["session_start"] = move_out(std::move(a.session_start), {n});
             d["history_offsets"] = move_out(std::move(a.history_offsets), {n + 1});
             d["history_items"] = move_out(std::move(a.history_items), {m});
             d["history_ts"] = move_out(std::move(a.history_ts), {m});
             return d;
           })
      .def("load_users",
           [](Engine& e, const py::dict& d) {
             hrnn::UserArrays a;
             // The arrays are taken and checked with the GIL, copied and validated without it: a
             // model file's sections are views at any byte offset, read as bytes (no aligned copy).
             auto n_events = raw_array<int64_t>(d["n_events"], {-1}, "n_events");
             a.n_users = n_events.size();
             a.H = e.params.H;
             const py::ssize_t n = a.n_users, H = a.H;
             auto U = raw_array<float>(d["U"], {n, H}, "U"), Hs = raw_array<float>(d["Hs"], {n, H}, "Hs");
             auto last_ts = raw_array<double>(d["last_ts"], {n}, "last_ts");
             auto last_session = raw_array<int64_t>(d["last_session"], {n}, "last_session");
             auto offsets = raw_array<int64_t>(d["history_offsets"], {n + 1}, "history_offsets");
             auto items = raw_array<int32_t>(d["history_items"], {-1}, "history_items");
             auto history_ts = raw_array<double>(d["history_ts"], {items.size()}, "history_ts");
             auto session_start = raw_array<int64_t>(d["session_start"], {n}, "session_start");
             py::gil_scoped_release release;
             copy_bytes(a.U, U);
             copy_bytes(a.Hs, Hs);
             copy_bytes(a.last_ts, last_ts);
             copy_bytes(a.last_session, last_session);
             copy_bytes(a.history_offsets, offsets);
             copy_bytes(a.history_items, items);
             copy_bytes(a.history_ts, history_ts);
             copy_bytes(a.n_events, n_events);
             copy_bytes(a.session_start, session_start);
             for (int32_t i : a.history_items)
               hrnn::require(i >= -1 && i < e.params.n_items, "history item index out of range");
             e.users.load(std::move(a));
           }, py::arg("users"))
      .def("next_item_ranks",
           [](const Engine& e, const Arr<int64_t>& p_off, const Arr<int32_t>& p_items, const Arr<double>& p_ts,
              const Arr<uint8_t>& p_new, const Arr<int64_t>& t_off, const Arr<int32_t>& t_items,
              const Arr<double>& t_ts, const Arr<uint8_t>& t_new, int num_threads,
              std::optional<std::vector<float>> weights) -> py::array {
             auto prefix = events(p_off, p_items, p_ts, p_new);
             auto test = events(t_off, t_items, t_ts, t_new);
             const std::vector<float> w = weights ? *weights : std::vector<float>{e.transitions.weight()};
             py::array_t<int32_t> ranks(std::vector<py::ssize_t>{static_cast<py::ssize_t>(w.size()), t_items.size()});
             int32_t* out = ranks.mutable_data();
             {
               py::gil_scoped_release release;
               hrnn::next_item_ranks(e.params, e.transitions, prefix.view(), test.view(), w, out, num_threads);
             }
             if (!weights) return ranks.reshape({t_items.size()});
             return ranks;
           },
           py::arg("p_offsets"), py::arg("p_items"), py::arg("p_timestamps"), py::arg("p_new_session"),
           py::arg("t_offsets"), py::arg("t_items"), py::arg("t_timestamps"), py::arg("t_new_session"),
           py::arg("num_threads") = 0, py::arg("weights") = py::none())
      .def("session_start_ranks",
           [](const Engine& e, const Arr<int64_t>& p_off, const Arr<int32_t>& p_items, const Arr<double>& p_ts,
              const Arr<uint8_t>& p_new, const Arr<int64_t>& t_off, const Arr<int32_t>& t_items,
              const Arr<double>& t_ts, const Arr<uint8_t>& t_new, const std::vector<std::pair<float, bool>>& options,
              int num_threads, std::optional<std::vector<float>> betas) -> py::array {
             auto prefix = events(p_off, p_items, p_ts, p_new);
             auto test = events(t_off, t_items, t_ts, t_new);
             const py::ssize_t n_users = t_off.size() - 1, n_options = static_cast<py::ssize_t>(options.size());
             const std::vector<float> b = betas ? *betas : std::vector<float>{0.f};
             py::array_t<int32_t> ranks(
                 std::vector<py::ssize_t>{n_options, static_cast<py::ssize_t>(b.size()), n_users});
             int32_t* out = ranks.mutable_data();
             {
               py::gil_scoped_release release;
               hrnn::session_start_ranks(e.params, e.transitions, prefix.view(), test.view(), options, out, num_threads,
                                         betas ? &e.neighbors : nullptr, b);
             }
             if (!betas) return ranks.reshape({n_options, n_users});
             return ranks;
           },
           py::arg("p_offsets"), py::arg("p_items"), py::arg("p_timestamps"), py::arg("p_new_session"),
           py::arg("t_offsets"), py::arg("t_items"), py::arg("t_timestamps"), py::arg("t_new_session"),
           py::arg("options"), py::arg("num_threads") = 0, py::arg("betas") = py::none())
      .def("advance",
           [](const Engine& e, const Arr<float>& u, const Arr<float>& h, bool fresh, const Arr<int32_t>& items,
              const Arr<float>& gaps, const Arr<uint8_t>& new_session) {
             const py::ssize_t H = e.params.H, n = items.size();
             py::array_t<float> uo = copy_out(checked(u, {H}, "u"), {H});
             py::array_t<float> ho = copy_out(checked(h, {H}, "h"), {H});
             checked(gaps, {n}, "gaps");
             checked(new_session, {n}, "new_session");
             for (py::ssize_t i = 0; i < n; ++i)
               hrnn::require(items.data()[i] >= -1 && items.data()[i] < e.params.n_items,
                             "item index out of range: " + std::to_string(items.data()[i]));
             float* up = uo.mutable_data();
             float* hp = ho.mutable_data();
             {
               py::gil_scoped_release release;
               hrnn::advance(e.params, up, hp, fresh, items.data(), gaps.data(), new_session.data(), n);
             }
             return py::make_tuple(uo, ho);
           },
           py::arg("u"), py::arg("h"), py::arg("fresh"), py::arg("items"), py::arg("gaps"), py::arg("new_session"));
}

}  // namespace hrnn_py
