// This machine's memory, for refusing sizes that could never fit (a clear error instead of
// std::bad_alloc half-way, or the OOM killer once the pages are touched).
#pragma once
#include <unistd.h>

namespace hrnn {

// Bytes of physical memory; 0 where the system does not say.
inline double physical_memory() {
  static const double bytes = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE);
  return bytes > 0 ? bytes : 0.0;
}

}  // namespace hrnn
