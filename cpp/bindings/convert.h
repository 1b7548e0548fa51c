// Numpy <-> core conversions for the bindings: checked shapes, no copies on the way in.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace hrnn_py {
namespace py = pybind11;

template <class T>
using Arr = py::array_t<T, py::array::c_style | py::array::forcecast>;

// Throws std::invalid_argument unless `a` has the given shape (-1 = any).
inline void check_shape(const py::array& a, const std::vector<py::ssize_t>& shape, const std::string& name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t k = 0; ok && k < shape.size(); ++k) ok = shape[k] < 0 || a.shape(k) == shape[k];
  if (!ok) {
    std::string want = "(", got = "(";
    for (auto s : shape) want += (s < 0 ? std::string("?") : std::to_string(s)) + ",";
    for (py::ssize_t k = 0; k < a.ndim(); ++k) got += std::to_string(a.shape(k)) + ",";
    throw std::invalid_argument(name + " must have shape " + want + ") but has shape " + got + ")");
  }
}

// Checks that `a` has the given shape (-1 = any) and returns its data.
template <class T>
const T* checked(const Arr<T>& a, std::vector<py::ssize_t> shape, const std::string& name) {
  check_shape(a, shape, name);
  return a.data();
}

// `obj` as a C-contiguous array of T with the given shape (-1 = any), without the copy that an
// unaligned buffer would get from Arr<T>: read it with copy_bytes. Other dtypes or layouts are
// converted (copied) as Arr<T> would.
template <class T>
py::array raw_array(const py::handle& obj, std::vector<py::ssize_t> shape, const std::string& name) {
  py::array a = py::array::ensure(obj);
  if (!a || !py::isinstance<py::array_t<T>>(a) || !(a.flags() & py::array::c_style)) a = Arr<T>::ensure(obj);
  if (!a) throw std::invalid_argument(name + " must be an array of numbers");
  check_shape(a, shape, name);
  return a;
}

// dst = the values of `a` (raw_array's result), whatever the alignment of its buffer.
template <class T>
void copy_bytes(std::vector<T>& dst, const py::array& a) {
  dst.resize(static_cast<size_t>(a.size()));
  if (!dst.empty()) std::memcpy(dst.data(), a.data(), dst.size() * sizeof(T));
}

// A new numpy array holding a copy of `n` values.
template <class T>
py::array_t<T> copy_out(const T* src, std::vector<py::ssize_t> shape) {
  py::array_t<T> out(shape);
  std::copy(src, src + out.size(), out.mutable_data());
  return out;
}

// A numpy array that takes over `v`'s buffer (no copy); a capsule frees it with the array.
template <class T>
py::array_t<T> move_out(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
  std::unique_ptr<std::vector<T>> owner(new std::vector<T>(std::move(v)));
  py::capsule free_it(owner.get(), [](void* q) { delete static_cast<std::vector<T>*>(q); });
  const T* data = owner.release()->data();
  return py::array_t<T>(shape, data, free_it);
}

}  // namespace hrnn_py
