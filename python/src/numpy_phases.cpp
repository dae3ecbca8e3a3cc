// NumPy bindings of the phases (phases.hpp): what a caller that communicates between the phases
// needs (bnorm.torch.SyncBatchNorm does so over torch.distributed). Moments are float64 arrays of
// shape (C, 3) holding (count, mean, M2) per channel, bnorm::Moments' layout.
#include <cstdint>
#include <type_traits>

#include "bnorm/geometry.hpp"
#include "bnorm/phases.hpp"
#include "numpy_arrays.hpp"

namespace bnorm::python {
namespace {

static_assert(std::is_standard_layout_v<Moments> && sizeof(Moments) == 3 * sizeof(double),
              "Moments must be three packed doubles to be viewed as a (C, 3) float64 array");

std::span<Moments> moments_of(py::array_t<double>& a) {
  return {reinterpret_cast<Moments*>(a.mutable_data()), static_cast<std::size_t>(a.size() / 3)};
}

struct Input {
  bool float64;
  std::vector<std::int64_t> shape;
  Geometry geometry;
};

Input input_of(const py::array& x, int axis) {
  const bool float64 = is_float64(x, "x");
  require_tensor(x, "x", float64);
  auto shape = shape_of(x);
  return {float64, shape, geometry_of(shape, axis)};
}

void require_like(const py::array& a, const Input& in, const char* name) {
  require_tensor(a, name, in.float64);
  if (shape_of(a) != in.shape) throw py::value_error(std::string(name) + " must have x's shape");
}

py::array_t<double> channel_moments_py(const py::array& x, int axis) {
  const Input in = input_of(x, axis);
  py::array_t<double> out({in.geometry.channels, std::int64_t{3}});
  auto ms = moments_of(out);
  dispatch(in.float64, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release release;
    channel_moments(tensor_span<T>(x), in.geometry, ms);
    return 0;
  });
  return out;
}

py::array_t<double> merge_ranks_py(const py::object& per_rank_obj) {
  auto per_rank =
      py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(per_rank_obj);
  if (!per_rank || per_rank.ndim() != 3 || per_rank.shape(2) != 3) {
    throw py::value_error("per_rank must be a float64 array of shape (ranks, C, 3)");
  }
  const auto ranks = per_rank.shape(0);
  const auto channels = per_rank.shape(1);
  py::array_t<double> merged({channels, py::ssize_t{3}});
  std::span<const Moments> in{reinterpret_cast<const Moments*>(per_rank.data()),
                              static_cast<std::size_t>(ranks * channels)};
  merge_ranks(in, static_cast<int>(ranks), moments_of(merged));
  return merged;
}

py::array normalize_py(const py::array& x, const py::object& mean, const py::object& variance,
                       const py::object& gamma, const py::object& beta, int axis, double epsilon,
                       const py::object& out) {
  const Input in = input_of(x, axis);
  auto m = per_channel<double>(mean);
  auto v = per_channel<double>(variance);
  return dispatch(in.float64, [&](auto tag) {
    using T = decltype(tag);
    auto g = per_channel<T>(gamma);
    auto b = per_channel<T>(beta);
    py::array y = output_like<T>(out, in.shape, "out");
    auto ys = mutable_tensor_span<T>(y, "out");
    {
      py::gil_scoped_release release;
      normalize(tensor_span<T>(x), ys, in.geometry, span_of(g), span_of(b),
                std::span<const double>(span_of(m)), std::span<const double>(span_of(v)), epsilon);
    }
    return y;
  });
}

py::tuple backward_sums_py(const py::array& x, const py::array& dy, const py::object& mean,
                           const py::object& variance, int axis, double epsilon) {
  const Input in = input_of(x, axis);
  require_like(dy, in, "dy");
  py::array_t<double> sum_dy(in.geometry.channels);
  py::array_t<double> sum_dy_xhat(in.geometry.channels);
  dispatch(in.float64, [&](auto tag) {
    using T = decltype(tag);
    auto m = per_channel<T>(mean);
    auto v = per_channel<T>(variance);
    py::gil_scoped_release release;
    backward_sums(tensor_span<T>(x), tensor_span<T>(dy), in.geometry, span_of(m), span_of(v),
                  epsilon, span_of(sum_dy), span_of(sum_dy_xhat));
    return 0;
  });
  return py::make_tuple(sum_dy, sum_dy_xhat);
}

py::array backward_input_py(const py::array& x, const py::array& dy, const py::object& mean,
                            const py::object& variance, const py::object& sum_dy,
                            const py::object& sum_dy_xhat, double count, const py::object& gamma,
                            int axis, double epsilon, const py::object& out) {
  const Input in = input_of(x, axis);
  require_like(dy, in, "dy");
  auto sdy = per_channel<double>(sum_dy);
  auto sdyx = per_channel<double>(sum_dy_xhat);
  return dispatch(in.float64, [&](auto tag) {
    using T = decltype(tag);
    auto m = per_channel<T>(mean);
    auto v = per_channel<T>(variance);
    auto g = per_channel<T>(gamma);
    py::array dx = output_like<T>(out, in.shape, "out");
    auto dxs = mutable_tensor_span<T>(dx, "out");
    {
      py::gil_scoped_release release;
      backward_input(tensor_span<T>(x), tensor_span<T>(dy), in.geometry, span_of(g), span_of(m),
                     span_of(v), epsilon, std::span<const double>(span_of(sdy)),
                     std::span<const double>(span_of(sdyx)), count, dxs);
    }
    return dx;
  });
}

}  // namespace

void register_phases(py::module_& m) {
  using py::arg;
  const auto none = py::none();
  m.def("channel_moments", &channel_moments_py, arg("x"), py::kw_only(), arg("axis") = -1,
        "Forward phase 1: (count, mean, M2) per channel as a float64 array of shape (C, 3)");
  m.def("merge_ranks", &merge_ranks_py, arg("per_rank"),
        "Merges moments gathered from every rank, shape (ranks, C, 3), in rank order (Chan)");
  m.def("normalize", &normalize_py, arg("x"), arg("mean"), arg("variance"), arg("gamma") = none,
        arg("beta") = none, py::kw_only(), arg("axis") = -1, arg("epsilon") = 1e-3,
        arg("out") = none, "Forward phase 2 with float64 statistics: returns y");
  m.def("backward_sums", &backward_sums_py, arg("x"), arg("dy"), arg("mean"), arg("variance"),
        py::kw_only(), arg("axis") = -1, arg("epsilon") = 1e-3,
        "Backward phase 1: returns (sum dy, sum dy * x_hat) per channel in float64");
  m.def("backward_input", &backward_input_py, arg("x"), arg("dy"), arg("mean"), arg("variance"),
        arg("sum_dy"), arg("sum_dy_xhat"), arg("count"), arg("gamma") = none, py::kw_only(),
        arg("axis") = -1, arg("epsilon") = 1e-3, arg("out") = none,
        "Backward phase 2: dx given the (global) sums and the count they came from");
}

}  // namespace bnorm::python
