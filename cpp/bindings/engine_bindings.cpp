// The Engine class: parameters, training epochs and user states, called with the GIL released.
#include <pybind11/stl.h>

#include <chrono>
#include <exception>
#include <optional>
#include <string>

#include "convert.h"
#include "hrnn/engine.h"
#include "hrnn/errors.h"

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
  if (optimizer == "adagrad") c.opt.kind = hrnn::OptKind::Adagrad;
  else if (optimizer == "adam") c.opt.kind = hrnn::OptKind::Adam;
  else throw std::invalid_argument("optimizer must be 'adagrad' or 'adam', got '" + optimizer + "'");
  c.opt.lr = learning_rate, c.opt.momentum = momentum;
  if (c.opt.kind == hrnn::OptKind::Adam) c.opt.eps = 1e-8f;
  c.dropout = dropout, c.seed = seed, c.num_threads = num_threads;
  c.validate();
  return c;
}

py::dict stats_dict(const hrnn::EpochStats& s) {
  py::dict d;
  d["loss"] = s.loss;
  d["events"] = s.events;
  d["windows"] = s.windows;
  d["interrupted"] = s.interrupted;
  return d;
}

}  // namespace

void bind_engine(py::module_& m) {
  using hrnn::Engine;
  py::class_<Engine>(m, "Engine")
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
           })
      .def("set_param",
           [](Engine& e, const std::string& name, const Arr<float>& a) {
             auto shape = e.params.shape(name);
             const float* src = checked(a, std::vector<py::ssize_t>(shape.begin(), shape.end()), name);
             auto& dst = e.params.block(name);
             std::copy(src, src + dst.size(), dst.begin());
           })
      .def("start_training",
           [](Engine& e, const Arr<double>& popularity, int batch_size, int bptt, int n_sample, double sample_alpha,
              const std::string& loss, bool logq, float bpreg, const std::string& optimizer, float learning_rate,
              float momentum, float dropout, uint64_t seed, int num_threads) {
             const double* pop = checked(popularity, {e.params.n_items}, "popularity");
             auto cfg = train_config(batch_size, bptt, n_sample, sample_alpha, loss, logq, bpreg, optimizer,
                                     learning_rate, momentum, dropout, seed, num_threads);
             py::gil_scoped_release release;
             e.start_training(cfg, pop);
           },
           py::arg("popularity"), py::arg("batch_size"), py::arg("bptt"), py::arg("n_sample"),
           py::arg("sample_alpha"), py::arg("loss"), py::arg("logq"), py::arg("bpreg"), py::arg("optimizer"),
           py::arg("learning_rate"), py::arg("momentum"), py::arg("dropout"), py::arg("seed"),
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
                 interrupted = true;
                 PyErr_Clear();
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
      .def("compute_states",
           [](Engine& e, const Arr<int64_t>& offsets, const Arr<int32_t>& items, const Arr<double>& ts,
              const Arr<uint8_t>& new_session, int num_threads) {
             auto buf = events(offsets, items, ts, new_session);
             py::gil_scoped_release release;
             e.compute_states(buf.view(), num_threads);
           },
           py::arg("offsets"), py::arg("items"), py::arg("timestamps"), py::arg("new_session"),
           py::arg("num_threads") = 0)
      .def("user_states",
           [](const Engine& e) {
             const py::ssize_t n = e.n_users(), H = e.params.H;
             return py::make_tuple(copy_out(e.user_u().data(), {n, H}), copy_out(e.user_h().data(), {n, H}));
           })
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
