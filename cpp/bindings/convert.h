// Numpy <-> core conversions for the bindings: checked shapes, no copies on the way in.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

namespace hrnn_py {
namespace py = pybind11;

template <class T>
using Arr = py::array_t<T, py::array::c_style | py::array::forcecast>;

// Checks that `a` has the given shape (-1 = any) and returns its data.
template <class T>
const T* checked(const Arr<T>& a, std::vector<py::ssize_t> shape, const std::string& name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t k = 0; ok && k < shape.size(); ++k) ok = shape[k] < 0 || a.shape(k) == shape[k];
  if (!ok) {
    std::string want = "(", got = "(";
    for (auto s : shape) want += (s < 0 ? std::string("?") : std::to_string(s)) + ",";
    for (py::ssize_t k = 0; k < a.ndim(); ++k) got += std::to_string(a.shape(k)) + ",";
    throw std::invalid_argument(name + " must have shape " + want + ") but has shape " + got + ")");
  }
  return a.data();
}

// A new numpy array holding a copy of `n` values.
template <class T>
py::array_t<T> copy_out(const T* src, std::vector<py::ssize_t> shape) {
  py::array_t<T> out(shape);
  std::copy(src, src + out.size(), out.mutable_data());
  return out;
}

}  // namespace hrnn_py
