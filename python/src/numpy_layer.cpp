// NumPy bindings of the layer (batch_norm.hpp): BatchNormOptions with its conventions, and
// BasicBatchNorm<float> / <double> as BatchNormFloat32 / BatchNormFloat64. Parameters, moving
// statistics and gradients are NumPy views of the layer's own memory (writable where the C++
// accessor is), valid while the layer lives (each view keeps it alive). bnorm.BatchNorm in
// __init__.py builds the options from keywords.
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <cstdint>
#include <string>

#include "bnorm/batch_norm.hpp"
#include "numpy_arrays.hpp"

namespace bnorm::python {
namespace {

// A NumPy view of a span owned by `owner` (the layer object), which it keeps alive.
template <class T>
py::array view_of(std::span<T> s, const py::object& owner, bool writable) {
  py::array a(py::dtype::of<std::remove_const_t<T>>(), {static_cast<py::ssize_t>(s.size())},
              {static_cast<py::ssize_t>(sizeof(T))}, s.data(), owner);
  if (!writable) a.attr("setflags")(py::arg("write") = false);
  return a;
}

template <class T>
void bind_layer(py::module_& m, const char* name) {
  using Layer = BasicBatchNorm<T>;
  using py::arg;
  auto view = [](auto get, bool writable) {
    return [get, writable](py::object self) {
      auto& layer = self.cast<Layer&>();
      return view_of(get(layer), self, writable);
    };
  };
  py::class_<Layer>(m, name)
      .def(py::init<std::int64_t, BatchNormOptions>(), arg("channels"),
           arg("options") = BatchNormOptions{})
      .def(
          "forward",
          [](Layer& layer, const py::array& x, bool training, const py::object& out) {
            require_tensor(x, "x", sizeof(T) == 8);
            const auto shape = shape_of(x);
            py::array y = output_like<T>(out, shape, "out");
            auto ys = mutable_tensor_span<T>(y, "out");
            {
              py::gil_scoped_release release;
              layer.forward(tensor_span<T>(x), shape, ys, training);
            }
            return y;
          },
          arg("x"), arg("training"), arg("out") = py::none(),
          "y = BN(x); training updates the moving statistics and caches for backward")
      .def(
          "backward",
          [](Layer& layer, const py::array& x, const py::array& dy, const py::object& out) {
            require_tensor(x, "x", sizeof(T) == 8);
            require_tensor(dy, "dy", sizeof(T) == 8);
            const auto shape = shape_of(x);
            if (shape_of(dy) != shape) throw py::value_error("dy must have x's shape");
            py::array dx = output_like<T>(out, shape, "out");
            auto dxs = mutable_tensor_span<T>(dx, "out");
            {
              py::gil_scoped_release release;
              layer.backward(tensor_span<T>(x), tensor_span<T>(dy), dxs);
            }
            return dx;
          },
          arg("x"), arg("dy"), arg("out") = py::none(),
          "dx of the last forward; gamma_grad and beta_grad are assigned")
      .def("regularization_loss", &Layer::regularization_loss)
      .def("apply_constraints", &Layer::apply_constraints)
      .def(
          "save", [](const Layer& layer, const std::filesystem::path& p) { layer.save(p); },
          arg("path"), "Safetensors state, written atomically")
      .def(
          "load",
          [](Layer& layer, const std::filesystem::path& p, const std::string& prefix) {
            layer.load(p, prefix);
          },
          arg("path"), arg("prefix") = "",
          "Loads Keras or PyTorch names (optionally prefixed, e.g. 'bn1.')")
      .def_property_readonly("channels", &Layer::channels)
      .def_property_readonly("options", &Layer::options)
      .def_property_readonly("dtype", [](const Layer&) { return py::dtype::of<T>(); })
      .def_property("num_batches_tracked", &Layer::num_batches_tracked,
                    &Layer::set_num_batches_tracked)
      .def_property_readonly("nonfinite_batches", &Layer::nonfinite_batches)
      .def_property_readonly("gamma", view([](Layer& l) { return l.gamma(); }, true))
      .def_property_readonly("beta", view([](Layer& l) { return l.beta(); }, true))
      .def_property_readonly("gamma_grad", view([](Layer& l) { return l.gamma_grad(); }, false))
      .def_property_readonly("beta_grad", view([](Layer& l) { return l.beta_grad(); }, false))
      .def_property_readonly("moving_mean", view([](Layer& l) { return l.moving_mean(); }, true))
      .def_property_readonly("moving_variance",
                             view([](Layer& l) { return l.moving_variance(); }, true))
      .def_property_readonly("renorm_mean", view([](Layer& l) { return l.renorm_mean(); }, true))
      .def_property_readonly("renorm_stddev",
                             view([](Layer& l) { return l.renorm_stddev(); }, true))
      .def_property_readonly("moving_stddev",
                             view([](Layer& l) { return l.moving_stddev(); }, true))
      .def_property_readonly("batch_mean",
                             view([](Layer& l) { return std::as_const(l).batch_mean(); }, false))
      .def_property_readonly(
          "batch_variance",
          view([](Layer& l) { return std::as_const(l).batch_variance(); }, false));
}

void bind_options(py::module_& m) {
  py::enum_<MomentumConvention>(m, "MomentumConvention")
      .value("keras", MomentumConvention::kKeras)
      .value("pytorch", MomentumConvention::kPyTorch);
  py::enum_<MovingVariance>(m, "MovingVariance")
      .value("biased", MovingVariance::kBiased)
      .value("unbiased", MovingVariance::kUnbiased);
  py::enum_<SingleValuePolicy>(m, "SingleValuePolicy")
      .value("output_beta", SingleValuePolicy::kOutputBeta)
      .value("error", SingleValuePolicy::kError);

  py::class_<RenormClipping>(m, "RenormClipping")
      .def(py::init([](double rmax, double rmin, double dmax) {
             return RenormClipping{rmax, rmin, dmax};
           }),
           py::arg("rmax") = RenormClipping{}.rmax, py::arg("rmin") = RenormClipping{}.rmin,
           py::arg("dmax") = RenormClipping{}.dmax)
      .def_readwrite("rmax", &RenormClipping::rmax)
      .def_readwrite("rmin", &RenormClipping::rmin)
      .def_readwrite("dmax", &RenormClipping::dmax);

  py::class_<Regularizer>(m, "Regularizer")
      .def(py::init([](double l1, double l2) {
             return Regularizer{l1, l2};
           }),
           py::arg("l1") = 0, py::arg("l2") = 0)
      .def_readwrite("l1", &Regularizer::l1)
      .def_readwrite("l2", &Regularizer::l2);

  py::class_<Constraint> constraint(m, "Constraint");
  constraint.def(py::init<>())
      .def_static("max_norm", &Constraint::max_norm, py::arg("max_value") = 2)
      .def_static("non_neg", &Constraint::non_neg)
      .def_static("unit_norm", &Constraint::unit_norm)
      .def_static("min_max_norm", &Constraint::min_max_norm, py::arg("min_value") = 0,
                  py::arg("max_value") = 1, py::arg("rate") = 1);

  py::class_<Initializer>(m, "Initializer")
      .def_static("zeros", &Initializer::zeros)
      .def_static("ones", &Initializer::ones)
      .def_static("constant", &Initializer::constant, py::arg("value"))
      .def_static("random_uniform", &Initializer::random_uniform, py::arg("minval") = -0.05,
                  py::arg("maxval") = 0.05, py::arg("seed") = 0)
      .def_static("random_normal", &Initializer::random_normal, py::arg("mean") = 0,
                  py::arg("stddev") = 0.05, py::arg("seed") = 0);

  py::class_<BatchNormOptions>(m, "BatchNormOptions")
      .def(py::init<>())
      .def_static("keras", &BatchNormOptions::keras)
      .def_static("pytorch", &BatchNormOptions::pytorch, py::arg("momentum") = 0.1,
                  py::arg("affine") = true, py::arg("track_running_stats") = true)
      .def("validate", &BatchNormOptions::validate)
      .def_readwrite("axis", &BatchNormOptions::axis)
      .def_readwrite("momentum", &BatchNormOptions::momentum)
      .def_readwrite("momentum_convention", &BatchNormOptions::momentum_convention)
      .def_readwrite("epsilon", &BatchNormOptions::epsilon)
      .def_readwrite("center", &BatchNormOptions::center)
      .def_readwrite("scale", &BatchNormOptions::scale)
      .def_readwrite("beta_initializer", &BatchNormOptions::beta_initializer)
      .def_readwrite("gamma_initializer", &BatchNormOptions::gamma_initializer)
      .def_readwrite("moving_mean_initializer", &BatchNormOptions::moving_mean_initializer)
      .def_readwrite("moving_variance_initializer", &BatchNormOptions::moving_variance_initializer)
      .def_readwrite("beta_regularizer", &BatchNormOptions::beta_regularizer)
      .def_readwrite("gamma_regularizer", &BatchNormOptions::gamma_regularizer)
      .def_readwrite("beta_constraint", &BatchNormOptions::beta_constraint)
      .def_readwrite("gamma_constraint", &BatchNormOptions::gamma_constraint)
      .def_readwrite("renorm", &BatchNormOptions::renorm)
      .def_readwrite("renorm_clipping", &BatchNormOptions::renorm_clipping)
      .def_readwrite("renorm_momentum", &BatchNormOptions::renorm_momentum)
      .def_readwrite("virtual_batch_size", &BatchNormOptions::virtual_batch_size)
      .def_readwrite("trainable", &BatchNormOptions::trainable)
      .def_readwrite("track_running_stats", &BatchNormOptions::track_running_stats)
      .def_readwrite("moving_variance", &BatchNormOptions::moving_variance)
      .def_readwrite("single_value", &BatchNormOptions::single_value)
      .def_readwrite("skip_nonfinite_updates", &BatchNormOptions::skip_nonfinite_updates);
}

}  // namespace

void register_layer(py::module_& m) {
  bind_options(m);
  bind_layer<float>(m, "BatchNormFloat32");
  bind_layer<double>(m, "BatchNormFloat64");
}

}  // namespace bnorm::python
