// Fork safety of the OpenMP helpers (parallel.h).
#include "hrnn/parallel.h"

#include <atomic>

#ifdef HRNN_HAVE_OPENMP
#include <pthread.h>
#endif

namespace hrnn {
namespace {

std::atomic<bool> used_parallel{false};
std::atomic<bool> forked_after_use{false};

#ifdef HRNN_HAVE_OPENMP
void in_child() {
  if (used_parallel.load(std::memory_order_relaxed)) forked_after_use.store(true, std::memory_order_relaxed);
}

// Registered when the library is loaded, before any parallel region can run.
[[maybe_unused]] const int registered = pthread_atfork(nullptr, nullptr, in_child);
#endif

}  // namespace

void note_parallel_use() {
  if (!used_parallel.load(std::memory_order_relaxed)) used_parallel.store(true, std::memory_order_relaxed);
}

bool forked_after_parallel_use() { return forked_after_use.load(std::memory_order_relaxed); }

}  // namespace hrnn
