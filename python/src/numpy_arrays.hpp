// NumPy arrays as bnorm spans: the checks and conversions every binding of the NumPy module uses.
//
// Tensors (x, dy, y, z, out) are used in place, zero-copy: they must be C-contiguous float32 or
// float64 ndarrays, otherwise ValueError says what was wrong (np.ascontiguousarray is the fix).
// Per-channel vectors (gamma, beta, mean, variance, ...) are small: any array-like is accepted
// and converted to the tensor's dtype (a copy of C values at most).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace bnorm::python {

namespace py = pybind11;

// True for float64, false for float32; ValueError naming `name` otherwise.
bool is_float64(const py::array& a, const char* name);

// Requires a C-contiguous ndarray of dtype T (ValueError naming `name` otherwise).
void require_tensor(const py::array& a, const char* name, bool float64);

std::vector<std::int64_t> shape_of(const py::array& a);

template <class T>
std::span<const T> tensor_span(const py::array& a) {
  return {static_cast<const T*>(a.data()), static_cast<std::size_t>(a.size())};
}

template <class T>
std::span<T> mutable_tensor_span(py::array& a, const char* name) {
  if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only");
  return {static_cast<T*>(a.mutable_data()), static_cast<std::size_t>(a.size())};
}

// A per-channel vector as a C-contiguous array of T (None: an empty array = bnorm's "absent").
template <class T>
py::array_t<T> per_channel(const py::object& v) {
  if (v.is_none()) return py::array_t<T>(0);
  auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(v);
  if (!a) throw py::error_already_set();
  return a;
}

template <class T>
std::span<const T> span_of(const py::array_t<T>& a) {
  return {a.data(), static_cast<std::size_t>(a.size())};
}

template <class T>
std::span<T> span_of(py::array_t<T>& a) {
  return {a.mutable_data(), static_cast<std::size_t>(a.size())};
}

// `out` when given (checked: an ndarray of `shape`, dtype T, C-contiguous, writable), else a new
// array of that shape.
template <class T>
py::array output_like(const py::object& out, const std::vector<std::int64_t>& shape,
                      const char* name) {
  if (out.is_none()) return py::array_t<T>(shape);
  if (!py::isinstance<py::array>(out)) {
    throw py::value_error(std::string(name) + " must be a numpy.ndarray or None");
  }
  auto a = py::reinterpret_borrow<py::array>(out);
  require_tensor(a, name, sizeof(T) == 8);
  if (shape_of(a) != shape) {
    throw py::value_error(std::string(name) + " has the wrong shape: expected the input's shape");
  }
  if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only");
  return a;
}

// Calls f(float{}) or f(double{}) by the dtype of x.
template <class F>
auto dispatch(bool float64, F&& f) {
  if (float64) return f(double{});
  return f(float{});
}

void register_functional(py::module_& m);
void register_phases(py::module_& m);
void register_layer(py::module_& m);

}  // namespace bnorm::python
