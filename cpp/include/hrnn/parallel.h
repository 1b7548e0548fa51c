// Exception-safe OpenMP helpers: every parallel region takes the caller's thread count, and an
// exception thrown by a worker is caught, the loop drains, and the first exception is rethrown after
// the join (exceptions must never escape an OpenMP region).
#pragma once
#include <cstdint>
#include <exception>
#include <mutex>

#ifdef HRNN_HAVE_OPENMP
#include <omp.h>
#endif

namespace hrnn {

// libgomp's thread pool does not survive fork(): a child process that opens a parallel region
// after its parent ran one hangs (pre-fork servers, multiprocessing's "fork"). Such a child runs
// single-threaded instead (parallel.cpp). Every region below notes its use first.
void note_parallel_use();
bool forked_after_parallel_use();

// 0 = all cores.
inline int resolve_threads(int num_threads) {
#ifdef HRNN_HAVE_OPENMP
  if (forked_after_parallel_use()) return 1;
  return num_threads > 0 ? num_threads : omp_get_num_procs();
#else
  (void)num_threads;
  return 1;
#endif
}

inline int thread_id() {
#ifdef HRNN_HAVE_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

class ExceptionCollector {
 public:
  template <class F>
  void run(F&& f) noexcept {
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
  }
  void rethrow() {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::mutex mu_;
  std::exception_ptr error_;
};

// Runs fn(i) for i in [0, n) on `num_threads` threads (dynamic schedule, chunk size `chunk`).
template <class F>
void parallel_for(int64_t n, int num_threads, F&& fn, int64_t chunk = 1) {
  ExceptionCollector errors;
  const int nt = resolve_threads(num_threads);
  (void)chunk;
  if (nt <= 1 || n <= 1) {  // no parallel region: it costs more than a small query's work
    for (int64_t i = 0; i < n; ++i) errors.run([&] { fn(i); });
    errors.rethrow();
    return;
  }
#ifdef HRNN_HAVE_OPENMP
  note_parallel_use();
#pragma omp parallel for num_threads(nt) schedule(dynamic, chunk)
#endif
  for (int64_t i = 0; i < n; ++i) errors.run([&] { fn(i); });
  errors.rethrow();
}

// Runs fn(thread_index, thread_count) once on each of `num_threads` threads.
template <class F>
void parallel_team(int num_threads, F&& fn) {
  ExceptionCollector errors;
  const int nt = resolve_threads(num_threads);
#ifdef HRNN_HAVE_OPENMP
  if (nt > 1) note_parallel_use();
#pragma omp parallel num_threads(nt) if (nt > 1)
  errors.run([&] { fn(omp_get_thread_num(), omp_get_num_threads()); });
#else
  (void)nt;
  errors.run([&] { fn(0, 1); });
#endif
  errors.rethrow();
}

}  // namespace hrnn
