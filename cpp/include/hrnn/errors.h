// Errors raised by the core. The core never aborts on user input: it throws, and the bindings turn
// std::invalid_argument into ValueError, std::out_of_range into KeyError/IndexError.
#pragma once
#include <stdexcept>
#include <string>

namespace hrnn {

[[noreturn]] inline void invalid(const std::string& what) { throw std::invalid_argument(what); }

inline void require(bool ok, const std::string& what) {
  if (!ok) invalid(what);
}

}  // namespace hrnn
