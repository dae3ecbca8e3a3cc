// Fused BN + ReLU and BN + Add + ReLU (include/bnorm/fused.hpp).
//
// Forward: the statistics phase (statistics.hpp), then one elementwise pass with the selected
// kernel's epilogue (Kernel::normalize with Activation::kRelu or kAddRelu) that writes
// y = max(0, BN(x) [+ z]) directly, so the activation costs no extra pass over memory. The kernel
// comes from the registry like every other call: forcing the reference runs the reference's own
// epilogue (the double formula, rounded once).
// Backward: the masked gradient dy * [y > 0] is written once (into dx, or into dz for Add, where
// it is an output anyway) and the batch-norm backward runs on it in place (dx may alias dy).
#include "bnorm/fused.hpp"

#include <fmt/format.h>

#include <string_view>

#include "bnorm/error.hpp"
#include "bnorm/functional.hpp"
#include "kernels/kernel.hpp"
#include "passes.hpp"
#include "scratch.hpp"
#include "statistics.hpp"
#include "validate.hpp"

namespace bnorm {
namespace {

template <class T>
const T* data_or_null(std::span<const T> s) {
  return s.empty() ? nullptr : s.data();
}

// ReLU, or Add + ReLU with the residual z.
template <class T>
kernels::Epilogue<T> relu_epilogue(const T* z) {
  return {z == nullptr ? kernels::Activation::kRelu : kernels::Activation::kAddRelu, z};
}

template <class T>
void forward_training_fused(std::string_view fn, std::span<const T> x, std::span<const T> z,
                            bool with_z, std::span<T> y, const Geometry& g,
                            std::span<const T> gamma, std::span<const T> beta, T epsilon,
                            std::span<T> batch_mean, std::span<T> batch_variance,
                            std::span<std::uint8_t> mask) {
  validate::geometry(fn, g);
  validate::tensor(fn, "x", x.size(), g);
  if (with_z) validate::tensor(fn, "z", z.size(), g);
  validate::tensor(fn, "y", y.size(), g);
  validate::channel(fn, "gamma", gamma.size(), g, true);
  validate::channel(fn, "beta", beta.size(), g, true);
  validate::epsilon(fn, epsilon);
  validate::channel(fn, "batch_mean", batch_mean.size(), g, false);
  validate::channel(fn, "batch_variance", batch_variance.size(), g, false);
  if (!mask.empty()) validate::tensor(fn, "mask", mask.size(), g);
  const auto C = static_cast<std::size_t>(g.channels);
  const auto statistics = scratch<double>(ScratchSlot::kStatistics, 2 * C);
  const std::span<double> mean = statistics.first(C);
  const std::span<double> variance = statistics.subspan(C);
  detail::batch_statistics<T>(detail::Caller{fn}, x, g, nullptr, detail::SingleValue::kReject, mean,
                              variance, batch_mean, batch_variance);
  if (g.size() > 0) {
    detail::apply_normalize<T>(x.data(), y.data(), g, data_or_null(gamma), data_or_null(beta),
                               mean.data(), variance.data(), epsilon,
                               relu_epilogue<T>(with_z ? z.data() : nullptr));
  }
  for (std::size_t j = 0; j < mask.size(); ++j) mask[j] = y[j] > 0 ? 1 : 0;
}

template <class T>
void forward_inference_relu_impl(std::span<const T> x, std::span<T> y, const Geometry& g,
                                 std::span<const T> gamma, std::span<const T> beta,
                                 std::span<const T> mean, std::span<const T> variance, T epsilon) {
  constexpr std::string_view fn = "forward_inference_relu";
  validate::geometry(fn, g);
  validate::tensor(fn, "x", x.size(), g);
  validate::tensor(fn, "y", y.size(), g);
  validate::channel(fn, "gamma", gamma.size(), g, true);
  validate::channel(fn, "beta", beta.size(), g, true);
  validate::channel(fn, "mean", mean.size(), g, false);
  validate::channel(fn, "variance", variance.size(), g, false);
  validate::epsilon(fn, epsilon);
  const auto C = static_cast<std::size_t>(g.channels);
  const auto statistics = scratch<double>(ScratchSlot::kStatistics, 2 * C);
  for (std::size_t c = 0; c < C; ++c) {
    statistics[c] = static_cast<double>(mean[c]);
    statistics[C + c] = static_cast<double>(variance[c]);
  }
  if (g.size() == 0) return;
  detail::apply_normalize<T>(x.data(), y.data(), g, data_or_null(gamma), data_or_null(beta),
                             statistics.data(), statistics.data() + C, epsilon,
                             relu_epilogue<T>(nullptr));
}

// out[j] = keep(j) ? dy[j] : 0 (out may alias dy).
template <class T, class Keep>
void masked_gradient(std::span<const T> dy, std::span<T> out, Keep&& keep) {
  const std::size_t n = dy.size();
  for (std::size_t j = 0; j < n; ++j) out[j] = keep(j) ? dy[j] : T(0);
}

template <class T>
void check_backward_tensors(std::string_view fn, std::span<const T> x, std::span<const T> dy,
                            std::size_t dx_size, const Geometry& g) {
  validate::geometry(fn, g);
  validate::tensor(fn, "x", x.size(), g);
  validate::tensor(fn, "dy", dy.size(), g);
  validate::tensor(fn, "dx", dx_size, g);
}

template <class T>
void backward_relu_impl(std::span<const T> x, std::span<const T> dy,
                        std::span<const std::uint8_t> mask, const Geometry& g,
                        std::span<const T> gamma, std::span<const T> mean,
                        std::span<const T> variance, T epsilon, std::span<T> dx,
                        std::span<T> dgamma, std::span<T> dbeta) {
  constexpr std::string_view fn = "backward_relu";
  check_backward_tensors(fn, x, dy, dx.size(), g);
  validate::tensor(fn, "mask", mask.size(), g);
  masked_gradient(dy, dx, [&](std::size_t j) { return mask[j] != 0; });
  backward(x, std::span<const T>(dx), g, gamma, mean, variance, epsilon, dx, dgamma, dbeta);
}

template <class T>
void backward_relu_from_y_impl(std::span<const T> x, std::span<const T> y, std::span<const T> dy,
                               const Geometry& g, std::span<const T> gamma, std::span<const T> mean,
                               std::span<const T> variance, T epsilon, std::span<T> dx,
                               std::span<T> dgamma, std::span<T> dbeta) {
  constexpr std::string_view fn = "backward_relu_from_y";
  check_backward_tensors(fn, x, dy, dx.size(), g);
  validate::tensor(fn, "y", y.size(), g);
  masked_gradient(dy, dx, [&](std::size_t j) { return y[j] > 0; });
  backward(x, std::span<const T>(dx), g, gamma, mean, variance, epsilon, dx, dgamma, dbeta);
}

template <class T>
void backward_add_relu_impl(std::span<const T> x, std::span<const T> y, std::span<const T> dy,
                            const Geometry& g, std::span<const T> gamma, std::span<const T> mean,
                            std::span<const T> variance, T epsilon, std::span<T> dx,
                            std::span<T> dz, std::span<T> dgamma, std::span<T> dbeta) {
  constexpr std::string_view fn = "backward_add_relu";
  check_backward_tensors(fn, x, dy, dx.size(), g);
  validate::tensor(fn, "y", y.size(), g);
  validate::tensor(fn, "dz", dz.size(), g);
  if (!dx.empty() && dx.data() == dz.data()) {
    throw Error(fmt::format("{}: dx and dz are the same buffer; expected distinct outputs", fn));
  }
  masked_gradient(dy, dz, [&](std::size_t j) { return y[j] > 0; });
  backward(x, std::span<const T>(dz), g, gamma, mean, variance, epsilon, dx, dgamma, dbeta);
}

}  // namespace

// ---- BN + ReLU ----

void forward_training_relu(std::span<const float> x, std::span<float> y, const Geometry& g,
                           std::span<const float> gamma, std::span<const float> beta, float epsilon,
                           std::span<float> batch_mean, std::span<float> batch_variance,
                           std::span<std::uint8_t> mask) {
  forward_training_fused<float>("forward_training_relu", x, {}, false, y, g, gamma, beta, epsilon,
                                batch_mean, batch_variance, mask);
}
void forward_training_relu(std::span<const double> x, std::span<double> y, const Geometry& g,
                           std::span<const double> gamma, std::span<const double> beta,
                           double epsilon, std::span<double> batch_mean,
                           std::span<double> batch_variance, std::span<std::uint8_t> mask) {
  forward_training_fused<double>("forward_training_relu", x, {}, false, y, g, gamma, beta, epsilon,
                                 batch_mean, batch_variance, mask);
}

void forward_inference_relu(std::span<const float> x, std::span<float> y, const Geometry& g,
                            std::span<const float> gamma, std::span<const float> beta,
                            std::span<const float> mean, std::span<const float> variance,
                            float epsilon) {
  forward_inference_relu_impl(x, y, g, gamma, beta, mean, variance, epsilon);
}
void forward_inference_relu(std::span<const double> x, std::span<double> y, const Geometry& g,
                            std::span<const double> gamma, std::span<const double> beta,
                            std::span<const double> mean, std::span<const double> variance,
                            double epsilon) {
  forward_inference_relu_impl(x, y, g, gamma, beta, mean, variance, epsilon);
}

void backward_relu(std::span<const float> x, std::span<const float> dy,
                   std::span<const std::uint8_t> mask, const Geometry& g,
                   std::span<const float> gamma, std::span<const float> batch_mean,
                   std::span<const float> batch_variance, float epsilon, std::span<float> dx,
                   std::span<float> dgamma, std::span<float> dbeta) {
  backward_relu_impl(x, dy, mask, g, gamma, batch_mean, batch_variance, epsilon, dx, dgamma, dbeta);
}
void backward_relu(std::span<const double> x, std::span<const double> dy,
                   std::span<const std::uint8_t> mask, const Geometry& g,
                   std::span<const double> gamma, std::span<const double> batch_mean,
                   std::span<const double> batch_variance, double epsilon, std::span<double> dx,
                   std::span<double> dgamma, std::span<double> dbeta) {
  backward_relu_impl(x, dy, mask, g, gamma, batch_mean, batch_variance, epsilon, dx, dgamma, dbeta);
}

void backward_relu_from_y(std::span<const float> x, std::span<const float> y,
                          std::span<const float> dy, const Geometry& g,
                          std::span<const float> gamma, std::span<const float> batch_mean,
                          std::span<const float> batch_variance, float epsilon, std::span<float> dx,
                          std::span<float> dgamma, std::span<float> dbeta) {
  backward_relu_from_y_impl(x, y, dy, g, gamma, batch_mean, batch_variance, epsilon, dx, dgamma,
                            dbeta);
}
void backward_relu_from_y(std::span<const double> x, std::span<const double> y,
                          std::span<const double> dy, const Geometry& g,
                          std::span<const double> gamma, std::span<const double> batch_mean,
                          std::span<const double> batch_variance, double epsilon,
                          std::span<double> dx, std::span<double> dgamma, std::span<double> dbeta) {
  backward_relu_from_y_impl(x, y, dy, g, gamma, batch_mean, batch_variance, epsilon, dx, dgamma,
                            dbeta);
}

// ---- BN + Add + ReLU ----

void forward_training_add_relu(std::span<const float> x, std::span<const float> z,
                               std::span<float> y, const Geometry& g, std::span<const float> gamma,
                               std::span<const float> beta, float epsilon,
                               std::span<float> batch_mean, std::span<float> batch_variance) {
  forward_training_fused<float>("forward_training_add_relu", x, z, true, y, g, gamma, beta, epsilon,
                                batch_mean, batch_variance, {});
}
void forward_training_add_relu(std::span<const double> x, std::span<const double> z,
                               std::span<double> y, const Geometry& g,
                               std::span<const double> gamma, std::span<const double> beta,
                               double epsilon, std::span<double> batch_mean,
                               std::span<double> batch_variance) {
  forward_training_fused<double>("forward_training_add_relu", x, z, true, y, g, gamma, beta,
                                 epsilon, batch_mean, batch_variance, {});
}

void backward_add_relu(std::span<const float> x, std::span<const float> y,
                       std::span<const float> dy, const Geometry& g, std::span<const float> gamma,
                       std::span<const float> batch_mean, std::span<const float> batch_variance,
                       float epsilon, std::span<float> dx, std::span<float> dz,
                       std::span<float> dgamma, std::span<float> dbeta) {
  backward_add_relu_impl(x, y, dy, g, gamma, batch_mean, batch_variance, epsilon, dx, dz, dgamma,
                         dbeta);
}
void backward_add_relu(std::span<const double> x, std::span<const double> y,
                       std::span<const double> dy, const Geometry& g, std::span<const double> gamma,
                       std::span<const double> batch_mean, std::span<const double> batch_variance,
                       double epsilon, std::span<double> dx, std::span<double> dz,
                       std::span<double> dgamma, std::span<double> dbeta) {
  backward_add_relu_impl(x, y, dy, g, gamma, batch_mean, batch_variance, epsilon, dx, dz, dgamma,
                         dbeta);
}

}  // namespace bnorm
