// CUDA errors as C++ exceptions (never an abort), and RAII device / pinned host buffers.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

namespace hrnn::cuda {

// std::bad_alloc, so that Python sees a MemoryError, with the call that failed in the message.
class OutOfMemory : public std::bad_alloc {
 public:
  explicit OutOfMemory(std::string what) : what_(std::move(what)) {}
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

inline void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();  // a non-sticky error must not be reported again by the next call
  if (e == cudaErrorMemoryAllocation) throw OutOfMemory(std::string("CUDA out of memory in ") + what);
  throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

// After each kernel launch: a bad configuration is reported here, a fault at the next sync.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// Makes device d current for the calling thread (each entry point calls it: threads do not share it).
inline void use_device(int d) { check(cudaSetDevice(d), "cudaSetDevice"); }

inline unsigned blocks_for(long long n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

// Device memory that only grows: reserve(n) keeps the contents only when no reallocation is needed.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }

  T* reserve(size_t n) {
    if (n <= n_) return p_;
    // Work queued earlier may still use the old memory (training queues windows ahead).
    if (p_) check(cudaDeviceSynchronize(), "cudaDeviceSynchronize (buffer growth)");
    release();
    void* p = nullptr;
    check(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
    p_ = static_cast<T*>(p);
    n_ = n;
    return p_;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  void zero(size_t n, cudaStream_t s) {
    reserve(n);
    if (n) check(cudaMemsetAsync(p_, 0, n * sizeof(T), s), "cudaMemsetAsync");
  }
  void upload(const T* src, size_t n, cudaStream_t s) {
    reserve(n);
    if (n) check(cudaMemcpyAsync(p_, src, n * sizeof(T), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync (to device)");
  }
  void download(T* dst, size_t n, cudaStream_t s) const {
    if (n > n_) throw std::logic_error("DeviceBuffer::download past the end");
    if (n) check(cudaMemcpyAsync(dst, p_, n * sizeof(T), cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync (to host)");
  }

 private:
  void release() noexcept {
    if (p_) (void)cudaFree(p_);  // errors at release cannot be reported (destructors must not throw)
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Page-locked host memory (fast, asynchronous copies), grow-only like DeviceBuffer.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() {
    if (p_) (void)cudaFreeHost(p_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  char* reserve(size_t n) {
    if (n <= n_) return p_;
    if (p_) (void)cudaFreeHost(p_);
    p_ = nullptr;
    n_ = 0;
    void* p = nullptr;
    check(cudaMallocHost(&p, n), "cudaMallocHost");
    p_ = static_cast<char*>(p);
    n_ = n;
    return p_;
  }
  char* get() const { return p_; }

 private:
  char* p_ = nullptr;
  size_t n_ = 0;
};

// An event without timing, for the host to wait on one point of a stream. Created at the first
// record, on the device current then (that of the stream); waiting on one never recorded returns.
class Event {
 public:
  Event() = default;
  ~Event() {
    if (e_) (void)cudaEventDestroy(e_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t s) {
    if (!e_) check(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming), "cudaEventCreate");
    check(cudaEventRecord(e_, s), "cudaEventRecord");
  }
  void wait() const {
    if (e_) check(cudaEventSynchronize(e_), "cudaEventSynchronize");
  }

 private:
  cudaEvent_t e_ = nullptr;
};

// A stream owned by an object (created on the current device).
class Stream {
 public:
  Stream() { check(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~Stream() { (void)cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }
  void sync() const { check(cudaStreamSynchronize(s_), "cudaStreamSynchronize"); }

 private:
  cudaStream_t s_ = nullptr;
};

}  // namespace hrnn::cuda
