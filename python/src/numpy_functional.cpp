// NumPy bindings of the functional API (functional.hpp), the fused variants (fused.hpp) and the
// phases (phases.hpp). Each function takes arrays of any rank with a channel `axis`, returns new
// arrays or writes `out=`, and releases the GIL while the kernels run.
#include <cstdint>
#include <tuple>

#include "bnorm/functional.hpp"
#include "bnorm/fused.hpp"
#include "bnorm/geometry.hpp"
#include "numpy_arrays.hpp"

namespace bnorm::python {
namespace {

using Shape = std::vector<std::int64_t>;

// The input tensor `x`: its dtype, shape and geometry, checked once.
struct Input {
  bool float64;
  Shape shape;
  Geometry geometry;
};

Input input_of(const py::array& x, int axis) {
  const bool float64 = is_float64(x, "x");
  require_tensor(x, "x", float64);
  Shape shape = shape_of(x);
  return {float64, shape, geometry_of(shape, axis)};
}

// Another tensor of the same call (dy, y, z): x's dtype, contiguity and shape.
void require_like(const py::array& a, const Input& in, const char* name) {
  require_tensor(a, name, in.float64);
  if (shape_of(a) != in.shape) {
    throw py::value_error(std::string(name) + " must have x's shape");
  }
}

template <class T>
py::array_t<T> channel_vector(std::int64_t channels) {
  return py::array_t<T>(channels);
}

py::tuple forward_training_py(const py::array& x, const py::object& gamma, const py::object& beta,
                              int axis, double epsilon, const py::object& out) {
  const Input in = input_of(x, axis);
  return dispatch(in.float64, [&](auto tag) {
    using T = decltype(tag);
    auto g = per_channel<T>(gamma);
    auto b = per_channel<T>(beta);
    py::array y = output_like<T>(out, in.shape, "out");
    auto mean = channel_vector<T>(in.geometry.channels);
    auto var = channel_vector<T>(in.geometry.channels);
    auto xs = tensor_span<T>(x);
    auto ys = mutable_tensor_span<T>(y, "out");
    {
      py::gil_scoped_release release;
      forward_training(xs, ys, in.geometry, span_of(g), span_of(b), static_cast<T>(epsilon),
                       span_of(mean), span_of(var));
    }
    return py::make_tuple(y, mean, var);
  });
}

py::array forward_inference_py(const py::array& x, const py::object& mean,
                               const py::object& variance, const py::object& gamma,
                               const py::object& beta, int axis, double epsilon,
                               const py::object& out, bool relu) {
  const Input in = input_of(x, axis);
  return dispatch(in.float64, [&](auto tag) {
    using T = decltype(tag);
    auto m = per_channel<T>(mean);
    auto v = per_channel<T>(variance);
    auto g = per_channel<T>(gamma);
    auto b = per_channel<T>(beta);
    py::array y = output_like<T>(out, in.shape, "out");
    auto xs = tensor_span<T>(x);
    auto ys = mutable_tensor_span<T>(y, "out");
    {
      py::gil_scoped_release release;
      if (relu) {
        forward_inference_relu(xs, ys, in.geometry, span_of(g), span_of(b), span_of(m), span_of(v),
                               static_cast<T>(epsilon));
      } else {
        forward_inference(xs, ys, in.geometry, span_of(g), span_of(b), span_of(m), span_of(v),
                          static_cast<T>(epsilon));
      }
    }
    return y;
  });
}

// Backward and its fused variants share their argument handling; `variant` picks the kernel.
enum class Variant { kPlain, kReluMask, kReluFromY, kAddRelu };

py::tuple backward_py(Variant variant, const py::array& x, const py::array& dy,
                      const py::object& mask_or_y, const py::object& mean,
                      const py::object& variance, const py::object& gamma, int axis, double epsilon,
                      const py::object& out) {
  const Input in = input_of(x, axis);
  require_like(dy, in, "dy");
  return dispatch(in.float64, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto m = per_channel<T>(mean);
    auto v = per_channel<T>(variance);
    auto g = per_channel<T>(gamma);
    py::array dx = output_like<T>(out, in.shape, "out");
    auto dgamma = channel_vector<T>(in.geometry.channels);
    auto dbeta = channel_vector<T>(in.geometry.channels);
    const auto xs = tensor_span<T>(x);
    const auto dys = tensor_span<T>(dy);
    auto dxs = mutable_tensor_span<T>(dx, "out");
    const T eps = static_cast<T>(epsilon);
    switch (variant) {
      case Variant::kPlain: {
        py::gil_scoped_release release;
        backward(xs, dys, in.geometry, span_of(g), span_of(m), span_of(v), eps, dxs,
                 span_of(dgamma), span_of(dbeta));
        break;
      }
      case Variant::kReluMask: {
        auto mask =
            py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>::ensure(mask_or_y);
        if (!mask || mask.size() != static_cast<py::ssize_t>(in.geometry.size())) {
          throw py::value_error(
              "mask must have x's size (the mask forward_training_relu returned)");
        }
        std::span<const std::uint8_t> ms{mask.data(), static_cast<std::size_t>(mask.size())};
        py::gil_scoped_release release;
        backward_relu(xs, dys, ms, in.geometry, span_of(g), span_of(m), span_of(v), eps, dxs,
                      span_of(dgamma), span_of(dbeta));
        break;
      }
      case Variant::kReluFromY: {
        auto y = py::reinterpret_borrow<py::array>(mask_or_y);
        require_like(y, in, "y");
        py::gil_scoped_release release;
        backward_relu_from_y(xs, tensor_span<T>(y), dys, in.geometry, span_of(g), span_of(m),
                             span_of(v), eps, dxs, span_of(dgamma), span_of(dbeta));
        break;
      }
      case Variant::kAddRelu: {
        auto y = py::reinterpret_borrow<py::array>(mask_or_y);
        require_like(y, in, "y");
        py::array dz = py::array_t<T>(in.shape);
        auto dzs = mutable_tensor_span<T>(dz, "dz");
        {
          py::gil_scoped_release release;
          backward_add_relu(xs, tensor_span<T>(y), dys, in.geometry, span_of(g), span_of(m),
                            span_of(v), eps, dxs, dzs, span_of(dgamma), span_of(dbeta));
        }
        return py::make_tuple(dx, dz, dgamma, dbeta);
      }
    }
    return py::make_tuple(dx, dgamma, dbeta);
  });
}

py::tuple forward_training_relu_py(const py::array& x, const py::object& gamma,
                                   const py::object& beta, int axis, double epsilon,
                                   const py::object& out) {
  const Input in = input_of(x, axis);
  return dispatch(in.float64, [&](auto tag) {
    using T = decltype(tag);
    auto g = per_channel<T>(gamma);
    auto b = per_channel<T>(beta);
    py::array y = output_like<T>(out, in.shape, "out");
    auto mean = channel_vector<T>(in.geometry.channels);
    auto var = channel_vector<T>(in.geometry.channels);
    py::array_t<std::uint8_t> mask(in.shape);
    auto xs = tensor_span<T>(x);
    auto ys = mutable_tensor_span<T>(y, "out");
    std::span<std::uint8_t> ms{mask.mutable_data(), static_cast<std::size_t>(mask.size())};
    {
      py::gil_scoped_release release;
      forward_training_relu(xs, ys, in.geometry, span_of(g), span_of(b), static_cast<T>(epsilon),
                            span_of(mean), span_of(var), ms);
    }
    return py::make_tuple(y, mean, var, mask);
  });
}

py::tuple forward_training_add_relu_py(const py::array& x, const py::array& z,
                                       const py::object& gamma, const py::object& beta, int axis,
                                       double epsilon, const py::object& out) {
  const Input in = input_of(x, axis);
  require_like(z, in, "z");
  return dispatch(in.float64, [&](auto tag) {
    using T = decltype(tag);
    auto g = per_channel<T>(gamma);
    auto b = per_channel<T>(beta);
    py::array y = output_like<T>(out, in.shape, "out");
    auto mean = channel_vector<T>(in.geometry.channels);
    auto var = channel_vector<T>(in.geometry.channels);
    auto xs = tensor_span<T>(x);
    auto zs = tensor_span<T>(z);
    auto ys = mutable_tensor_span<T>(y, "out");
    {
      py::gil_scoped_release release;
      forward_training_add_relu(xs, zs, ys, in.geometry, span_of(g), span_of(b),
                                static_cast<T>(epsilon), span_of(mean), span_of(var));
    }
    return py::make_tuple(y, mean, var);
  });
}

}  // namespace

void register_functional(py::module_& m) {
  using py::arg;
  const auto none = py::none();
  m.def("forward_training", &forward_training_py, arg("x"), arg("gamma") = none, arg("beta") = none,
        py::kw_only(), arg("axis") = -1, arg("epsilon") = 1e-3, arg("out") = none,
        "Training forward: returns (y, batch_mean, batch_variance); y = gamma * (x - mean) / "
        "sqrt(var + epsilon) + beta with the batch's mean and biased variance per channel. "
        "y may be x (out=x).");
  m.def(
      "forward_inference",
      [](const py::array& x, const py::object& mean, const py::object& variance,
         const py::object& gamma, const py::object& beta, int axis, double epsilon,
         const py::object& out) {
        return forward_inference_py(x, mean, variance, gamma, beta, axis, epsilon, out, false);
      },
      arg("x"), arg("mean"), arg("variance"), arg("gamma") = none, arg("beta") = none,
      py::kw_only(), arg("axis") = -1, arg("epsilon") = 1e-3, arg("out") = none,
      "Inference forward with given statistics: returns y.");
  m.def(
      "backward",
      [](const py::array& x, const py::array& dy, const py::object& mean,
         const py::object& variance, const py::object& gamma, int axis, double epsilon,
         const py::object& out) {
        return backward_py(Variant::kPlain, x, dy, py::none(), mean, variance, gamma, axis, epsilon,
                           out);
      },
      arg("x"), arg("dy"), arg("mean"), arg("variance"), arg("gamma") = none, py::kw_only(),
      arg("axis") = -1, arg("epsilon") = 1e-3, arg("out") = none,
      "Backward of forward_training given its statistics: returns (dx, dgamma, dbeta).");
  m.def("forward_training_relu", &forward_training_relu_py, arg("x"), arg("gamma") = none,
        arg("beta") = none, py::kw_only(), arg("axis") = -1, arg("epsilon") = 1e-3,
        arg("out") = none,
        "y = max(0, BN(x)): returns (y, batch_mean, batch_variance, mask) with mask uint8");
  m.def(
      "forward_inference_relu",
      [](const py::array& x, const py::object& mean, const py::object& variance,
         const py::object& gamma, const py::object& beta, int axis, double epsilon,
         const py::object& out) {
        return forward_inference_py(x, mean, variance, gamma, beta, axis, epsilon, out, true);
      },
      arg("x"), arg("mean"), arg("variance"), arg("gamma") = none, arg("beta") = none,
      py::kw_only(), arg("axis") = -1, arg("epsilon") = 1e-3, arg("out") = none,
      "y = max(0, BN(x)) with given statistics");
  m.def(
      "backward_relu",
      [](const py::array& x, const py::array& dy, const py::object& mask, const py::object& mean,
         const py::object& variance, const py::object& gamma, int axis, double epsilon,
         const py::object& out) {
        return backward_py(Variant::kReluMask, x, dy, mask, mean, variance, gamma, axis, epsilon,
                           out);
      },
      arg("x"), arg("dy"), arg("mask"), arg("mean"), arg("variance"), arg("gamma") = none,
      py::kw_only(), arg("axis") = -1, arg("epsilon") = 1e-3, arg("out") = none,
      "Backward of forward_training_relu with its mask: returns (dx, dgamma, dbeta)");
  m.def(
      "backward_relu_from_y",
      [](const py::array& x, const py::array& y, const py::array& dy, const py::object& mean,
         const py::object& variance, const py::object& gamma, int axis, double epsilon,
         const py::object& out) {
        return backward_py(Variant::kReluFromY, x, dy, y, mean, variance, gamma, axis, epsilon,
                           out);
      },
      arg("x"), arg("y"), arg("dy"), arg("mean"), arg("variance"), arg("gamma") = none,
      py::kw_only(), arg("axis") = -1, arg("epsilon") = 1e-3, arg("out") = none,
      "Backward of forward_training_relu from its output y: returns (dx, dgamma, dbeta)");
  m.def("forward_training_add_relu", &forward_training_add_relu_py, arg("x"), arg("z"),
        arg("gamma") = none, arg("beta") = none, py::kw_only(), arg("axis") = -1,
        arg("epsilon") = 1e-3, arg("out") = none,
        "y = max(0, BN(x) + z): returns (y, batch_mean, batch_variance)");
  m.def(
      "backward_add_relu",
      [](const py::array& x, const py::array& y, const py::array& dy, const py::object& mean,
         const py::object& variance, const py::object& gamma, int axis, double epsilon,
         const py::object& out) {
        return backward_py(Variant::kAddRelu, x, dy, y, mean, variance, gamma, axis, epsilon, out);
      },
      arg("x"), arg("y"), arg("dy"), arg("mean"), arg("variance"), arg("gamma") = none,
      py::kw_only(), arg("axis") = -1, arg("epsilon") = 1e-3, arg("out") = none,
      "Backward of forward_training_add_relu: returns (dx, dz, dgamma, dbeta)");
}

}  // namespace bnorm::python
