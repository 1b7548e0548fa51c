// The CUDA engine behind the core's Accelerator interface: training runners (parameters on the
// device for a whole epoch) and batch scoring.
#include <algorithm>
#include <mutex>
#include <string>

#include "check.cuh"
#include "cuda_api.h"
#include "device_model.cuh"
#include "hrnn/kernels.h"
#include "hrnn/parallel.h"
#include "hrnn/topk.h"
#include "optimizer.cuh"
#include "topk.cuh"
#include "window_engine.cuh"

namespace hrnn::cuda {
namespace {

// Each window is queued and train returns without waiting for it: the host plans the next window
// while the device runs this one. The lane states stay on the device between windows, and a
// window's loss reaches the host behind an event, returned by the next train (or finish_epoch).
class CudaRunner : public WindowRunner {
 public:
  CudaRunner(int device, Params& P, const TrainConfig& cfg) : device_(device), P_(P) {
    use_device(device_);
    stream_ = std::make_unique<Stream>();
    model_.upload(P, stream_->get());
    opt_ = std::make_unique<DeviceOptimizer>(model_, cfg.opt, stream_->get());
  }

  WindowResult train(Window& w, const float* logq, const WindowConfig& cfg) override {
    use_device(device_);
    const cudaStream_t s = stream_->get();
    if (logq != logq_source_) {  // the trainer's array, the same for its whole life
      logq_.upload(logq, static_cast<size_t>(P_.n_items), s);
      logq_source_ = logq;
    }
    const bool carried = carried_lanes_ == w.B;  // else the window's own u_init / h_init
    engine_.enqueue(model_, logq_.get(), w, cfg, false, s, carried ? carry_u_.get() : nullptr,
                    carried ? carry_h_.get() : nullptr);
    const WindowData& d = engine_.data();
    if (d.n_targets > 0)
      opt_->step(model_, engine_.grad_dense(), d.d.rows, d.d.row_flags, d.n_rows, engine_.grad_E(), engine_.grad_O(),
                 engine_.grad_bo(), s);
    const size_t bh = static_cast<size_t>(w.B) * P_.H;
    carry_u_.reserve(bh);
    carry_h_.reserve(bh);
    engine_.save_states(carry_u_.get(), carry_h_.get(), s);
    carried_lanes_ = w.B;
    Pending& now = pending_[next_];  // two windows back, its result returned already
    next_ ^= 1;
    now.terms = engine_.loss_terms();
    now.n_targets = d.n_targets;
    engine_.copy_losses(reinterpret_cast<float*>(now.host.reserve(static_cast<size_t>(now.terms) * sizeof(float))), s);
    now.done.record(s);
    now.queued = true;
    return pending_[next_].wait_and_sum();  // the previous window's
  }

  WindowResult finish_epoch() override {
    use_device(device_);
    const WindowResult last = pending_[next_ ^ 1].wait_and_sum();
    model_.download(P_, stream_->get());
    carried_lanes_ = -1;  // the next epoch starts from the trainer's states
    return last;
  }

 private:
  struct Pending {
    PinnedBuffer host;
    Event done;
    int64_t terms = 0, n_targets = 0;
    bool queued = false;
    WindowResult wait_and_sum() {
      if (!queued) return {};
      queued = false;
      done.wait();
      return {sum_losses(reinterpret_cast<const float*>(host.get()), terms), n_targets};
    }
  };

  int device_;
  Params& P_;
  std::unique_ptr<Stream> stream_;
  DeviceModel model_;
  std::unique_ptr<DeviceOptimizer> opt_;
  DeviceWindowEngine engine_;
  DeviceBuffer<float> logq_, carry_u_, carry_h_;
  const float* logq_source_ = nullptr;
  int carried_lanes_ = -1;
  Pending pending_[2];
  int next_ = 0;
};

class CudaAccelerator : public Accelerator {
 public:
  CudaAccelerator(int device, DeviceScoring scoring) : device_(device) {
    use_device(device_);
    stream_ = std::make_unique<Stream>();
    scorer_.set_mode(scoring);
  }
  const char* name() const override { return "cuda"; }

  std::unique_ptr<WindowRunner> make_runner(Params& P, const TrainConfig& cfg) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      scorer_.release();  // the training copy needs the memory more
    }
    return std::make_unique<CudaRunner>(device_, P, cfg);
  }

  bool score_topk(const Params& P, const float* bias, const float* hs, int64_t M, int k,
                  const std::vector<ItemSet>& exclude, const std::vector<Boosts>& boosts, int32_t* out_items,
                  float* out_scores, int num_threads) override {
    if (k > kMaxDeviceK || P.n_items > 0x7fffffff) return false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      use_device(device_);
      if (!scorer_.ready()) scorer_.upload(P, bias, stream_->get());
      scorer_.top_k(P, hs, M, k, exclude, boosts, out_items, out_scores, stream_->get());
    }
    // Boosted items, which the device skipped, with their exact score plus boost (as score_topk).
    const int H = P.H;
    const float* O = P.out_rows();
    constexpr int64_t kBlock = 256;
    parallel_for((M + kBlock - 1) / kBlock, num_threads, [&](int64_t blk) {
      TopK top(k);
      for (int64_t r = blk * kBlock; r < std::min(M, (blk + 1) * kBlock); ++r) {
        if (boosts[r].empty()) continue;
        top.reset(k);
        int32_t* items = out_items + r * k;
        float* scores = out_scores + r * k;
        for (int j = 0; j < k && items[j] >= 0; ++j) top.push(scores[j], items[j]);
        for (const auto& [item, boost] : boosts[r]) {
          if (std::binary_search(exclude[r].begin(), exclude[r].end(), item)) continue;
          top.push(dot(hs + r * H, O + static_cast<int64_t>(item) * H, H) + bias[item] + boost, item);
        }
        top.write(items, scores);
      }
    });
    return true;
  }

  void params_changed() override {
    std::lock_guard<std::mutex> lock(mu_);
    scorer_.release();
  }

 private:
  int device_;
  std::mutex mu_;  // one query at a time on the device buffers
  std::unique_ptr<Stream> stream_;
  DeviceScorer scorer_;
};

}  // namespace

DeviceStatus device_status() noexcept {
  DeviceStatus st;
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    st.reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
    return st;
  }
  st.count = n;
  if (n == 0) st.reason = "cudaGetDeviceCount found no device";
  return st;
}

namespace {
void require_device(int device) {
  const DeviceStatus st = device_status();
  if (st.count == 0) throw std::invalid_argument("device='cuda': no CUDA device is visible (" + st.reason + ")");
  if (device < 0 || device >= st.count)
    throw std::invalid_argument("CUDA device " + std::to_string(device) + " does not exist (" +
                                std::to_string(st.count) + " visible)");
}
}  // namespace

std::shared_ptr<Accelerator> make_accelerator(int device, const std::string& scoring) {
  DeviceScoring mode = DeviceScoring::Auto;
  if (scoring == "full") mode = DeviceScoring::Full;
  else if (scoring == "candidates") mode = DeviceScoring::Candidates;
  else if (scoring != "auto")
    throw std::invalid_argument("scoring must be 'auto', 'full' or 'candidates', got '" + scoring + "'");
  require_device(device);
  return std::make_shared<CudaAccelerator>(device, mode);
}

WindowOutputs window_loss_grad(int device, const Params& P, const Window& w, const float* logq,
                               const WindowConfig& cfg) {
  require_device(device);
  use_device(device);
  Stream stream;
  const cudaStream_t s = stream.get();
  DeviceModel model;
  model.upload(P, s);
  DeviceBuffer<float> lq;
  lq.upload(logq, static_cast<size_t>(P.n_items), s);
  DeviceWindowEngine engine;
  WindowOutputs out;
  out.result = engine.run(model, lq.get(), w, cfg, true, s);
  const int H = P.H;
  const size_t tbh = static_cast<size_t>(w.T) * w.B * H;
  out.u.resize(tbh);
  out.h.resize(tbh);
  engine.recorded_states(out.u.data(), out.h.data(), s);

  std::vector<float> dense(static_cast<size_t>(model.layout.total));
  const WindowData& d = engine.data();
  const size_t rows = static_cast<size_t>(d.n_rows);
  std::vector<float> gE(rows * H), gO(P.tied ? 0 : rows * H), gb(rows);
  auto fetch = [&](std::vector<float>& dst, const float* src) {
    if (!dst.empty())
      check(cudaMemcpyAsync(dst.data(), src, dst.size() * sizeof(float), cudaMemcpyDeviceToHost, s),
            "cudaMemcpyAsync (gradients)");
  };
  fetch(dense, engine.grad_dense());
  fetch(gE, engine.grad_E());
  fetch(gO, engine.grad_O());
  fetch(gb, engine.grad_bo());
  stream.sync();
  out.dense.resize(H);
  size_t at = 0;
  out.dense.for_each([&](const char*, std::vector<float>& v) {
    std::copy(dense.begin() + at, dense.begin() + at + v.size(), v.begin());
    at += v.size();
  });
  out.E.assign(static_cast<size_t>(P.n_items) * H, 0.f);
  if (!P.tied) out.O.assign(static_cast<size_t>(P.n_items) * H, 0.f);
  out.bo.assign(static_cast<size_t>(P.n_items), 0.f);
  for (size_t r = 0; r < rows; ++r) {
    const int64_t item = d.host_rows[r];
    std::copy_n(gE.begin() + r * H, H, out.E.begin() + item * H);
    if (!P.tied) std::copy_n(gO.begin() + r * H, H, out.O.begin() + item * H);
    out.bo[item] = gb[r];
  }
  return out;
}

}  // namespace hrnn::cuda
