// bnorm as a PyTorch operator: torch.ops.bnorm.batch_norm, with the schema of aten::batch_norm
// (less cudnn_enabled). Registered with TORCH_LIBRARY so that torch.jit.trace and torch.jit.script
// record it as one node, torch.fx sees it as a call and ONNX export maps it (bnorm/torch.py
// registers the symbolic). One translation unit: the torch headers are slow to compile.
//
// Dispatch keys:
//   CPU       the forward on bnorm's kernels (inference mode, no autograd)
//   Autograd  a torch::autograd::Function around the same forward. Its backward runs bnorm's
//             backward kernel; when the backward itself is recorded (create_graph=True, i.e. grad
//             mode on inside backward) it runs a composite of torch ops instead, whose own
//             backward torch derives: double backward is correct without an opaque kernel.
//
// Layouts: a contiguous tensor (N, C, ...) is bnorm's channels-first geometry {N, C, H*W}; a 4-D
// channels_last (or 5-D channels_last_3d) tensor is NHWC memory, bnorm's channels-last geometry
// {N*H*W, C, 1}. Outputs keep the input's memory format; no copy in either case.
//
// Threads: bnorm's kernels use OpenMP; every call first sets the OpenMP thread count to torch's
// intra-op count (at::get_num_threads(), what torch.get_num_threads() returns), so bnorm follows
// torch.set_num_threads() in every Python thread and with torch builds that ship their own
// OpenMP runtime.
#include <omp.h>
#include <torch/extension.h>
#include <torch/library.h>

#include <cstdint>
#include <span>
#include <tuple>
#include <vector>

#include "bnorm/functional.hpp"
#include "bnorm/geometry.hpp"

namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void follow_torch_threads() {
  const int threads = at::get_num_threads();
  if (omp_get_max_threads() != threads) omp_set_num_threads(threads);
}

// How bnorm sees a tensor: its geometry and the memory format it is stored in.
struct Layout {
  bnorm::Geometry geometry;
  at::MemoryFormat format = at::MemoryFormat::Contiguous;
};

Layout layout_of(const Tensor& x) {
  TORCH_CHECK(x.dim() >= 2, "bnorm.batch_norm: expected an input of at least 2 dimensions (N, C, ",
              "...), got ", x.dim(), "-D");
  std::int64_t inner = 1;
  for (std::int64_t d = 2; d < x.dim(); ++d) inner *= x.size(d);
  const std::int64_t n = x.size(0);
  const std::int64_t c = x.size(1);
  if (!x.is_contiguous()) {
    if ((x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast)) ||
        (x.dim() == 5 && x.is_contiguous(at::MemoryFormat::ChannelsLast3d))) {
      return {{n * inner, c, 1},
              x.dim() == 4 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::ChannelsLast3d};
    }
  }
  return {{n, c, inner}, at::MemoryFormat::Contiguous};
}

// The tensor in the layout's memory format: itself when it already is (the common case).
Tensor in_format(const Tensor& t, at::MemoryFormat format) {
  return t.is_contiguous(format) ? t : t.contiguous(format);
}

// A per-channel tensor (weight, bias, running statistics) as dtype T, contiguous; undefined stays
// undefined (bnorm's empty span: scale 1, shift 0).
Tensor per_channel(const Tensor& t, at::ScalarType dtype) {
  if (!t.defined()) return t;
  TORCH_CHECK(t.dim() == 1, "bnorm.batch_norm: per-channel tensors must be 1-D, got shape ",
              t.sizes());
  // The common case without a dispatcher call (each costs about a microsecond per call).
  if (t.scalar_type() == dtype && t.is_contiguous()) return t;
  return t.to(dtype).contiguous();
}

template <class T>
std::span<const T> read_span(const Tensor& t) {
  if (!t.defined()) return {};
  return {t.data_ptr<T>(), static_cast<std::size_t>(t.numel())};
}

template <class T>
std::span<T> write_span(const Tensor& t) {
  if (!t.defined()) return {};
  return {t.data_ptr<T>(), static_cast<std::size_t>(t.numel())};
}

// running = (1 - momentum) * running + momentum * batch, as torch does it (the variance unbiased
// by count / (count - 1)). Written into `running` whatever its dtype.
void update_running(const Tensor& running, const Tensor& batch, double momentum, double unbias) {
  if (!running.defined()) return;
  at::NoGradGuard no_grad;
  if (running.scalar_type() == batch.scalar_type() && running.is_contiguous()) {
    AT_DISPATCH_FLOATING_TYPES(running.scalar_type(), "bnorm_update_running", [&] {
      auto* r = running.data_ptr<scalar_t>();
      const auto* b = batch.data_ptr<scalar_t>();
      const auto m = static_cast<scalar_t>(momentum);
      const auto u = static_cast<scalar_t>(unbias);
      for (std::int64_t c = 0; c < running.numel(); ++c) {
        r[c] = (scalar_t(1) - m) * r[c] + m * (b[c] * u);
      }
    });
  } else {
    running.mul_(1 - momentum).add_(batch.to(running.scalar_type()) * unbias, momentum);
  }
}

// The forward on bnorm's kernels. Returns y and the statistics the backward needs: the batch
// mean and biased variance in training, the running ones (as x's dtype) in inference.
std::tuple<Tensor, Tensor, Tensor> forward_impl(const Tensor& input, const Tensor& weight,
                                                const Tensor& bias, const Tensor& running_mean,
                                                const Tensor& running_var, bool training,
                                                double momentum, double eps) {
  TORCH_CHECK(input.device().is_cpu(), "bnorm.batch_norm: CPU tensors only, got ", input.device());
  const auto dtype = input.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "bnorm.batch_norm: float32 or float64 input expected, got ", dtype);
  const Layout layout = layout_of(input);
  const Tensor x = in_format(input, layout.format);
  const Tensor w = per_channel(weight, dtype);
  const Tensor b = per_channel(bias, dtype);
  Tensor y = at::empty(x.sizes(), x.options().memory_format(layout.format));
  const bnorm::Geometry& g = layout.geometry;
  follow_torch_threads();

  if (!training) {
    TORCH_CHECK(running_mean.defined() && running_var.defined(),
                "bnorm.batch_norm: inference needs running_mean and running_var");
    Tensor mean = per_channel(running_mean, dtype);
    Tensor var = per_channel(running_var, dtype);
    AT_DISPATCH_FLOATING_TYPES(dtype, "bnorm_forward_inference", [&] {
      bnorm::forward_inference(read_span<scalar_t>(x), write_span<scalar_t>(y), g,
                               read_span<scalar_t>(w), read_span<scalar_t>(b),
                               read_span<scalar_t>(mean), read_span<scalar_t>(var),
                               static_cast<scalar_t>(eps));
    });
    return {y, mean, var};
  }

  Tensor mean = at::empty({g.channels}, x.options().memory_format(at::MemoryFormat::Contiguous));
  Tensor var = at::empty_like(mean);
  AT_DISPATCH_FLOATING_TYPES(dtype, "bnorm_forward_training", [&] {
    bnorm::forward_training(read_span<scalar_t>(x), write_span<scalar_t>(y), g,
                            read_span<scalar_t>(w), read_span<scalar_t>(b),
                            static_cast<scalar_t>(eps), write_span<scalar_t>(mean),
                            write_span<scalar_t>(var));
  });
  const std::int64_t count = g.count_per_channel();
  if (count > 0) {  // torch leaves the running statistics alone on an empty batch
    const double unbias =
        count > 1 ? static_cast<double>(count) / static_cast<double>(count - 1) : 1.0;
    update_running(running_mean, mean, momentum, 1.0);
    update_running(running_var, var, momentum, unbias);
  }
  return {y, mean, var};
}

// Backward in torch ops, differentiable by torch (used for double backward and inference mode).
// Training recomputes the statistics from x so that their dependence on x is in the graph.
std::vector<Tensor> composite_backward(const Tensor& x, const Tensor& dy, const Tensor& weight,
                                       const Tensor& mean, const Tensor& var, bool training,
                                       double eps) {
  std::vector<std::int64_t> dims{0};
  std::vector<std::int64_t> channel_shape(static_cast<std::size_t>(x.dim()), 1);
  channel_shape[1] = x.size(1);
  for (std::int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  Tensor invstd;
  Tensor xhat;
  if (training) {
    const Tensor mu = x.mean(dims, /*keepdim=*/true);
    const Tensor centered = x - mu;
    invstd = ((centered * centered).mean(dims, true) + eps).rsqrt();
    xhat = centered * invstd;
  } else {
    invstd = (var + eps).rsqrt().view(channel_shape);
    xhat = (x - mean.view(channel_shape)) * invstd;
  }
  const Tensor dbias = dy.sum(dims);
  const Tensor dweight = (dy * xhat).sum(dims);
  const Tensor scale = weight.defined() ? weight.view(channel_shape) * invstd : invstd;
  Tensor dx;
  if (training) {
    const double count = static_cast<double>(x.numel() / std::max<std::int64_t>(x.size(1), 1));
    dx = scale *
         (dy - dbias.view(channel_shape) / count - xhat * dweight.view(channel_shape) / count);
  } else {
    dx = scale * dy;
  }
  return {dx, dweight, dbias};
}

// bnorm's backward of a training forward: dx in x's layout, dgamma and dbeta when wanted.
std::vector<Tensor> kernel_backward(const Tensor& input, const Tensor& grad, const Tensor& weight,
                                    const Tensor& mean, const Tensor& var, double eps,
                                    bool want_dweight, bool want_dbias) {
  const Layout layout = layout_of(input);
  const Tensor x = in_format(input, layout.format);
  const Tensor dy = in_format(grad, layout.format);
  const auto dtype = x.scalar_type();
  const Tensor w = per_channel(weight, dtype);
  Tensor dx = at::empty(x.sizes(), x.options().memory_format(layout.format));
  const bool need_params = want_dweight || want_dbias;
  Tensor dweight = need_params ? at::empty({layout.geometry.channels}, mean.options()) : Tensor();
  Tensor dbias = need_params ? at::empty({layout.geometry.channels}, mean.options()) : Tensor();
  follow_torch_threads();
  AT_DISPATCH_FLOATING_TYPES(dtype, "bnorm_backward", [&] {
    bnorm::backward(read_span<scalar_t>(x), read_span<scalar_t>(dy), layout.geometry,
                    read_span<scalar_t>(w), read_span<scalar_t>(mean), read_span<scalar_t>(var),
                    static_cast<scalar_t>(eps), write_span<scalar_t>(dx),
                    write_span<scalar_t>(dweight), write_span<scalar_t>(dbias));
  });
  return {dx, want_dweight ? dweight : Tensor(), want_dbias ? dbias : Tensor()};
}

Tensor value_or_undefined(const c10::optional<Tensor>& t) {
  return t.has_value() ? *t : Tensor();
}

// None stays None, and so does an undefined tensor.
c10::optional<Tensor> present(const c10::optional<Tensor>& t) {
  return t.has_value() && t->defined() ? t : c10::nullopt;
}

struct BatchNormFunction : public torch::autograd::Function<BatchNormFunction> {
  // Optional tensors: an absent weight or bias is no input of the graph (an undefined Tensor
  // argument would be taken for one).
  static Tensor forward(AutogradContext* ctx, const Tensor& input,
                        const c10::optional<Tensor>& weight, const c10::optional<Tensor>& bias,
                        const c10::optional<Tensor>& running_mean,
                        const c10::optional<Tensor>& running_var, bool training, double momentum,
                        double eps) {
    const Tensor w = value_or_undefined(weight);
    auto [y, mean, var] =
        forward_impl(input, w, value_or_undefined(bias), value_or_undefined(running_mean),
                     value_or_undefined(running_var), training, momentum, eps);
    ctx->save_for_backward({input, w, mean, var});
    ctx->saved_data["training"] = training;
    ctx->saved_data["eps"] = eps;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor& x = saved[0];
    const Tensor& weight = saved[1];
    const bool training = ctx->saved_data["training"].toBool();
    const double eps = ctx->saved_data["eps"].toDouble();
    variable_list result(8);
    const Tensor& dy = grads[0];
    if (!dy.defined()) return result;
    const bool want_dx = ctx->needs_input_grad(0);
    const bool want_dweight = weight.defined() && ctx->needs_input_grad(1);
    const bool want_dbias = ctx->needs_input_grad(2);
    // Grad mode is on inside backward exactly when the backward is being recorded
    // (create_graph=True): then the result must be differentiable, so torch ops compute it.
    std::vector<Tensor> grads_out =
        (!training || torch::GradMode::is_enabled())
            ? composite_backward(x, dy, weight, saved[2], saved[3], training, eps)
            : kernel_backward(x, dy, weight, saved[2], saved[3], eps, want_dweight, want_dbias);
    if (want_dx) result[0] = grads_out[0];
    if (want_dweight) result[1] = grads_out[1];
    if (want_dbias) result[2] = grads_out[2];
    return result;
  }
};

Tensor batch_norm_cpu(const Tensor& input, const c10::optional<Tensor>& weight,
                      const c10::optional<Tensor>& bias, const c10::optional<Tensor>& running_mean,
                      const c10::optional<Tensor>& running_var, bool training, double momentum,
                      double eps) {
  return std::get<0>(forward_impl(input, value_or_undefined(weight), value_or_undefined(bias),
                                  value_or_undefined(running_mean), value_or_undefined(running_var),
                                  training, momentum, eps));
}

Tensor batch_norm_autograd(const Tensor& input, const c10::optional<Tensor>& weight,
                           const c10::optional<Tensor>& bias,
                           const c10::optional<Tensor>& running_mean,
                           const c10::optional<Tensor>& running_var, bool training, double momentum,
                           double eps) {
  return BatchNormFunction::apply(input, present(weight), present(bias), present(running_mean),
                                  present(running_var), training, momentum, eps);
}

// The Python entry point of the eager path: through the dispatcher (so the tracer records the
// operator) without torch.ops' per-call argument parsing in Python.
Tensor batch_norm_call(const Tensor& input, const c10::optional<Tensor>& weight,
                       const c10::optional<Tensor>& bias, const c10::optional<Tensor>& running_mean,
                       const c10::optional<Tensor>& running_var, bool training, double momentum,
                       double eps) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("bnorm::batch_norm", "")
                             .typed<decltype(batch_norm_cpu)>();
  return op.call(input, weight, bias, running_mean, running_var, training, momentum, eps);
}

}  // namespace

TORCH_LIBRARY(bnorm, m) {
  m.def(
      "batch_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, "
      "Tensor? running_var, bool training, float momentum, float eps) -> Tensor");
}

TORCH_LIBRARY_IMPL(bnorm, CPU, m) {
  m.impl("batch_norm", batch_norm_cpu);
}

TORCH_LIBRARY_IMPL(bnorm, Autograd, m) {
  m.impl("batch_norm", batch_norm_autograd);
}

PYBIND11_MODULE(_torch_ops, m) {
  namespace py = pybind11;
  m.doc() = "bnorm's PyTorch operator (torch.ops.bnorm.batch_norm) and its eager entry point";
  m.def("batch_norm", &batch_norm_call, py::arg("input"), py::arg("weight"), py::arg("bias"),
        py::arg("running_mean"), py::arg("running_var"), py::arg("training"), py::arg("momentum"),
        py::arg("eps"), py::call_guard<py::gil_scoped_release>(),
        "torch.ops.bnorm.batch_norm without torch.ops' Python argument parsing");
  m.def(
      "openmp_threads", [] { return omp_get_max_threads(); },
      "The OpenMP thread count bnorm's kernels would use now in this thread (tests)");
  // The torch this module was compiled against: bnorm/torch.py refuses a different one (ABI).
  m.attr("torch_version") = BNORM_TORCH_VERSION;
}
