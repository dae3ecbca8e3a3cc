// The NumPy module bnorm._bnorm: array checks shared by the bindings, threads and kernel choice.
// The functional API is bound in numpy_functional.cpp, the layer in numpy_layer.cpp.
#include <omp.h>

#include <string>

#include <pybind11/stl.h>

#include "bnorm/kernels.hpp"
#include "numpy_arrays.hpp"

namespace bnorm::python {

bool is_float64(const py::array& a, const char* name) {
  if (py::isinstance<py::array_t<double>>(a)) return true;
  if (py::isinstance<py::array_t<float>>(a)) return false;
  throw py::value_error(std::string(name) + " has dtype " + py::str(a.dtype()).cast<std::string>() +
                        ": bnorm takes float32 or float64 arrays");
}

void require_tensor(const py::array& a, const char* name, bool float64) {
  if (is_float64(a, name) != float64) {
    throw py::value_error(std::string(name) + " has dtype " +
                          py::str(a.dtype()).cast<std::string>() + ", expected " +
                          (float64 ? "float64" : "float32") + " (the input's dtype)");
  }
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) +
                          " is not C-contiguous: bnorm works in place on C-contiguous arrays "
                          "(pass numpy.ascontiguousarray(" +
                          name + "))");
  }
}

std::vector<std::int64_t> shape_of(const py::array& a) {
  return {a.shape(), a.shape() + a.ndim()};
}

}  // namespace bnorm::python

PYBIND11_MODULE(_bnorm, m) {
  namespace py = pybind11;
  using namespace bnorm::python;
  m.doc() = "bnorm: batch normalization on NumPy arrays (the functional API and the layer)";

  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1)
          throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
        omp_set_num_threads(n);
      },
      py::arg("n"), "OpenMP threads for bnorm's kernels in the calling thread");
  m.def(
      "get_num_threads", [] { return omp_get_max_threads(); },
      "OpenMP threads bnorm's kernels use in the calling thread");
  m.def("kernel_names", &bnorm::kernel_names,
        "Compiled kernel implementations in order of preference ('reference' last)");
  m.def(
      "set_kernel", [](const std::string& name) { bnorm::set_kernel(name); }, py::arg("name"),
      "Force one implementation by name ('' restores the automatic choice)");
  m.def("forced_kernel", &bnorm::forced_kernel);

  register_functional(m);
  register_phases(m);
  register_layer(m);
}
