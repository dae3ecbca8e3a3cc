// The functional API and its phases: validate the arguments, then run the phases, each a
// function of its own (phases.hpp, DESIGN.md):
//
//   forward_training = batch_statistics (statistics.hpp) -> apply_normalize (passes.hpp)
//   backward         = backward_sums -> [all-reduce] -> apply_backward_input (passes.hpp)
//
// or, for one process, the selected kernel's fused path when it has one (Kernel::forward_training,
// Kernel::backward), bitwise the same. The formulas and their coefficients are derived once, in
// kernels/coefficients.hpp; every kernel is reached through the registry (kernels/registry.hpp).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <span>

#include "bnorm/error.hpp"
#include "bnorm/functional.hpp"
#include "bnorm/phases.hpp"
#include "kernels/coefficients.hpp"
#include "kernels/registry.hpp"
#include "passes.hpp"
#include "scratch.hpp"
#include "statistics.hpp"
#include "validate.hpp"

namespace bnorm {
namespace {

using detail::Caller;

template <class T>
const T* data_or_null(std::span<const T> s) {
  return s.empty() ? nullptr : s.data();
}

template <class T>
void channel_moments_impl(std::span<const T> x, const Geometry& g, std::span<Moments> moments) {
  constexpr std::string_view fn = "channel_moments";
  validate::geometry(fn, g);
  validate::tensor(fn, "x", x.size(), g);
  validate::channel(fn, "moments", moments.size(), g, false);
  kernels::select<T>(g).moments(x.data(), g, moments.data());
}

template <class T>
void check_normalize_args(std::string_view fn, std::span<const T> x, std::span<T> y,
                          const Geometry& g, std::span<const T> gamma, std::span<const T> beta,
                          double epsilon) {
  validate::geometry(fn, g);
  validate::tensor(fn, "x", x.size(), g);
  validate::tensor(fn, "y", y.size(), g);
  validate::channel(fn, "gamma", gamma.size(), g, true);
  validate::channel(fn, "beta", beta.size(), g, true);
  validate::epsilon(fn, epsilon);
}

template <class T>
void normalize_impl(std::span<const T> x, std::span<T> y, const Geometry& g,
                    std::span<const T> gamma, std::span<const T> beta, std::span<const double> mean,
                    std::span<const double> variance, double epsilon) {
  constexpr std::string_view fn = "normalize";
  check_normalize_args(fn, x, y, g, gamma, beta, epsilon);
  validate::channel(fn, "mean", mean.size(), g, false);
  validate::channel(fn, "variance", variance.size(), g, false);
  detail::apply_normalize<T>(x.data(), y.data(), g, data_or_null(gamma), data_or_null(beta),
                             mean.data(), variance.data(), epsilon);
}

// The kernel's fused forward (statistics and normalization in one sweep), for one process;
// false when the kernel has none or declines g, and the caller runs the phases.
template <class T>
bool fused_forward(std::string_view fn, std::span<const T> x, std::span<T> y, const Geometry& g,
                   std::span<const T> gamma, std::span<const T> beta, T epsilon,
                   std::span<T> batch_mean, std::span<T> batch_variance) {
  const kernels::Kernel<T>& kernel = kernels::select<T>(g);
  if (kernel.forward_training == nullptr || g.size() == 0) return false;
  detail::require_more_than_one_value(Caller{fn}, static_cast<double>(g.count_per_channel()), g,
                                      false);
  const auto C = static_cast<std::size_t>(g.channels);
  const auto statistics = scratch<double>(ScratchSlot::kStatistics, 2 * C);
  if (!kernel.forward_training(x.data(), y.data(), g, data_or_null(gamma), data_or_null(beta),
                               epsilon, statistics.data(), statistics.data() + C)) {
    return false;
  }
  detail::store_statistics<T>(statistics.first(C), statistics.subspan(C), batch_mean,
                              batch_variance);
  return true;
}

// The kernel's fused backward (sums and dx in one sweep), for one process.
template <class T>
bool fused_backward(std::string_view fn, std::span<const T> x, std::span<const T> dy,
                    const Geometry& g, std::span<const T> gamma, std::span<const T> mean,
                    std::span<const T> variance, T epsilon, std::span<T> dx, std::span<T> dgamma,
                    std::span<T> dbeta) {
  const kernels::Kernel<T>& kernel = kernels::select<T>(g);
  if (kernel.backward == nullptr || g.size() == 0) return false;
  detail::require_more_than_one_value(Caller{fn}, static_cast<double>(g.count_per_channel()), g,
                                      false);
  const auto C = static_cast<std::size_t>(g.channels);
  const auto sums = scratch<double>(ScratchSlot::kStatistics, 2 * C);
  if (!kernel.backward(x.data(), dy.data(), dx.data(), g, data_or_null(gamma), mean.data(),
                       variance.data(), epsilon, sums.data(), sums.data() + C)) {
    return false;
  }
  for (std::size_t c = 0; c < C; ++c) {
    if (!dgamma.empty()) dgamma[c] = static_cast<T>(sums[C + c]);
    if (!dbeta.empty()) dbeta[c] = static_cast<T>(sums[c]);
  }
  return true;
}

template <class T>
void forward_training_impl(std::span<const T> x, std::span<T> y, const Geometry& g,
                           std::span<const T> gamma, std::span<const T> beta, T epsilon,
                           std::span<T> batch_mean, std::span<T> batch_variance,
                           const Communicator* comm) {
  constexpr std::string_view fn = "forward_training";
  check_normalize_args<T>(fn, x, y, g, gamma, beta, epsilon);
  validate::channel(fn, "batch_mean", batch_mean.size(), g, false);
  validate::channel(fn, "batch_variance", batch_variance.size(), g, false);
  const bool synchronized = comm != nullptr && comm->size() > 1;
  if (!synchronized &&
      fused_forward(fn, x, y, g, gamma, beta, epsilon, batch_mean, batch_variance)) {
    return;
  }
  const auto C = static_cast<std::size_t>(g.channels);
  const auto statistics = scratch<double>(ScratchSlot::kStatistics, 2 * C);
  const std::span<double> mean = statistics.first(C);
  const std::span<double> variance = statistics.subspan(C);
  detail::batch_statistics<T>(Caller{fn}, x, g, comm, detail::SingleValue::kReject, mean, variance,
                              batch_mean, batch_variance);
  if (g.size() > 0) {
    detail::apply_normalize<T>(x.data(), y.data(), g, data_or_null(gamma), data_or_null(beta),
                               mean.data(), variance.data(), epsilon);
  }
}

template <class T>
void check_backward_args(std::string_view fn, std::span<const T> x, std::span<const T> dy,
                         const Geometry& g, std::span<const T> gamma, std::span<const T> mean,
                         std::span<const T> variance, double epsilon) {
  validate::geometry(fn, g);
  validate::tensor(fn, "x", x.size(), g);
  validate::tensor(fn, "dy", dy.size(), g);
  validate::channel(fn, "gamma", gamma.size(), g, true);
  validate::channel(fn, "batch_mean", mean.size(), g, false);
  validate::channel(fn, "batch_variance", variance.size(), g, false);
  validate::epsilon(fn, epsilon);
}

// Sums of dy and dy * x_hat per channel; arguments already validated.
template <class T>
void backward_sums_unchecked(std::span<const T> x, std::span<const T> dy, const Geometry& g,
                             std::span<const T> mean, std::span<const T> variance, double epsilon,
                             std::span<double> sum_dy, std::span<double> sum_dy_xhat) {
  kernels::select<T>(g).backward_sums(x.data(), dy.data(), g, mean.data(), sum_dy.data(),
                                      sum_dy_xhat.data());
  for (std::size_t c = 0; c < sum_dy_xhat.size(); ++c) {
    sum_dy_xhat[c] =
        kernels::sum_dy_xhat_of(sum_dy_xhat[c], static_cast<double>(variance[c]), epsilon);
  }
}

template <class T>
void backward_impl(std::span<const T> x, std::span<const T> dy, const Geometry& g,
                   std::span<const T> gamma, std::span<const T> mean, std::span<const T> variance,
                   T epsilon, std::span<T> dx, std::span<T> dgamma, std::span<T> dbeta,
                   const Communicator* comm) {
  constexpr std::string_view fn = "backward";
  check_backward_args<T>(fn, x, dy, g, gamma, mean, variance, epsilon);
  validate::tensor(fn, "dx", dx.size(), g);
  validate::channel(fn, "dgamma", dgamma.size(), g, true);
  validate::channel(fn, "dbeta", dbeta.size(), g, true);
  if ((comm == nullptr || comm->size() == 1) &&
      fused_backward(fn, x, dy, g, gamma, mean, variance, epsilon, dx, dgamma, dbeta)) {
    return;
  }
  const auto C = static_cast<std::size_t>(g.channels);
  // sums = [sum_dy (C) | sum_dy_xhat (C) | count (1)]: one collective when synchronized.
  const std::span<double> sums = scratch<double>(ScratchSlot::kStatistics, 2 * C + 1);
  const std::span<double> sum_dy(sums.data(), C);
  const std::span<double> sum_dy_xhat(sums.data() + C, C);
  backward_sums_unchecked<T>(x, dy, g, mean, variance, epsilon, sum_dy, sum_dy_xhat);
  sums[2 * C] = static_cast<double>(g.count_per_channel());
  const bool synchronized = comm != nullptr && comm->size() > 1;
  if (synchronized) comm->allreduce_sum(sums);
  const double count = sums[2 * C];
  detail::require_more_than_one_value(Caller{fn}, count, g, synchronized);
  for (std::size_t c = 0; c < C; ++c) {
    if (!dgamma.empty()) dgamma[c] = static_cast<T>(sum_dy_xhat[c]);
    if (!dbeta.empty()) dbeta[c] = static_cast<T>(sum_dy[c]);
  }
  if (g.size() == 0) return;
  detail::apply_backward_input<T>(x.data(), dy.data(), dx.data(), g, data_or_null(gamma),
                                  mean.data(), variance.data(), epsilon, sum_dy.data(),
                                  sum_dy_xhat.data(), count);
}

template <class T>
void forward_inference_impl(std::span<const T> x, std::span<T> y, const Geometry& g,
                            std::span<const T> gamma, std::span<const T> beta,
                            std::span<const T> mean, std::span<const T> variance, T epsilon) {
  constexpr std::string_view fn = "forward_inference";
  check_normalize_args<T>(fn, x, y, g, gamma, beta, epsilon);
  validate::channel(fn, "mean", mean.size(), g, false);
  validate::channel(fn, "variance", variance.size(), g, false);
  const auto C = static_cast<std::size_t>(g.channels);
  const auto statistics = scratch<double>(ScratchSlot::kStatistics, 2 * C);
  std::copy(mean.begin(), mean.end(), statistics.begin());
  std::copy(variance.begin(), variance.end(), statistics.begin() + C);
  detail::apply_normalize<T>(x.data(), y.data(), g, data_or_null(gamma), data_or_null(beta),
                             statistics.data(), statistics.data() + C, epsilon);
}

}  // namespace

// ---- phases ----

void channel_moments(std::span<const float> x, const Geometry& g, std::span<Moments> moments) {
  channel_moments_impl(x, g, moments);
}
void channel_moments(std::span<const double> x, const Geometry& g, std::span<Moments> moments) {
  channel_moments_impl(x, g, moments);
}

void normalize(std::span<const float> x, std::span<float> y, const Geometry& g,
               std::span<const float> gamma, std::span<const float> beta,
               std::span<const double> mean, std::span<const double> variance, double epsilon) {
  normalize_impl(x, y, g, gamma, beta, mean, variance, epsilon);
}
void normalize(std::span<const double> x, std::span<double> y, const Geometry& g,
               std::span<const double> gamma, std::span<const double> beta,
               std::span<const double> mean, std::span<const double> variance, double epsilon) {
  normalize_impl(x, y, g, gamma, beta, mean, variance, epsilon);
}

namespace {
template <class T>
void backward_sums_impl(std::span<const T> x, std::span<const T> dy, const Geometry& g,
                        std::span<const T> mean, std::span<const T> variance, double epsilon,
                        std::span<double> sum_dy, std::span<double> sum_dy_xhat) {
  constexpr std::string_view fn = "backward_sums";
  check_backward_args<T>(fn, x, dy, g, {}, mean, variance, epsilon);
  validate::channel(fn, "sum_dy", sum_dy.size(), g, false);
  validate::channel(fn, "sum_dy_xhat", sum_dy_xhat.size(), g, false);
  backward_sums_unchecked(x, dy, g, mean, variance, epsilon, sum_dy, sum_dy_xhat);
}

template <class T>
void backward_input_impl(std::span<const T> x, std::span<const T> dy, const Geometry& g,
                         std::span<const T> gamma, std::span<const T> mean,
                         std::span<const T> variance, double epsilon,
                         std::span<const double> sum_dy, std::span<const double> sum_dy_xhat,
                         double count, std::span<T> dx) {
  constexpr std::string_view fn = "backward_input";
  check_backward_args<T>(fn, x, dy, g, gamma, mean, variance, epsilon);
  validate::channel(fn, "sum_dy", sum_dy.size(), g, false);
  validate::channel(fn, "sum_dy_xhat", sum_dy_xhat.size(), g, false);
  validate::tensor(fn, "dx", dx.size(), g);
  if (g.size() > 0 && !(count > 0)) {
    throw Error(
        fmt::format("{}: count = {}; expected the number of values the statistics came "
                    "from (> 0) for a non-empty batch",
                    fn, count));
  }
  if (g.size() == 0) return;
  detail::apply_backward_input<T>(x.data(), dy.data(), dx.data(), g, data_or_null(gamma),
                                  mean.data(), variance.data(), epsilon, sum_dy.data(),
                                  sum_dy_xhat.data(), count);
}
}  // namespace

void backward_sums(std::span<const float> x, std::span<const float> dy, const Geometry& g,
                   std::span<const float> mean, std::span<const float> variance, double epsilon,
                   std::span<double> sum_dy, std::span<double> sum_dy_xhat) {
  backward_sums_impl(x, dy, g, mean, variance, epsilon, sum_dy, sum_dy_xhat);
}
void backward_sums(std::span<const double> x, std::span<const double> dy, const Geometry& g,
                   std::span<const double> mean, std::span<const double> variance, double epsilon,
                   std::span<double> sum_dy, std::span<double> sum_dy_xhat) {
  backward_sums_impl(x, dy, g, mean, variance, epsilon, sum_dy, sum_dy_xhat);
}

void backward_input(std::span<const float> x, std::span<const float> dy, const Geometry& g,
                    std::span<const float> gamma, std::span<const float> mean,
                    std::span<const float> variance, double epsilon, std::span<const double> sum_dy,
                    std::span<const double> sum_dy_xhat, double count, std::span<float> dx) {
  backward_input_impl(x, dy, g, gamma, mean, variance, epsilon, sum_dy, sum_dy_xhat, count, dx);
}
void backward_input(std::span<const double> x, std::span<const double> dy, const Geometry& g,
                    std::span<const double> gamma, std::span<const double> mean,
                    std::span<const double> variance, double epsilon,
                    std::span<const double> sum_dy, std::span<const double> sum_dy_xhat,
                    double count, std::span<double> dx) {
  backward_input_impl(x, dy, g, gamma, mean, variance, epsilon, sum_dy, sum_dy_xhat, count, dx);
}

// ---- functional API ----

void forward_training(std::span<const float> x, std::span<float> y, const Geometry& g,
                      std::span<const float> gamma, std::span<const float> beta, float epsilon,
                      std::span<float> batch_mean, std::span<float> batch_variance) {
  forward_training_impl(x, y, g, gamma, beta, epsilon, batch_mean, batch_variance, nullptr);
}
void forward_training(std::span<const double> x, std::span<double> y, const Geometry& g,
                      std::span<const double> gamma, std::span<const double> beta, double epsilon,
                      std::span<double> batch_mean, std::span<double> batch_variance) {
  forward_training_impl(x, y, g, gamma, beta, epsilon, batch_mean, batch_variance, nullptr);
}
void forward_training(std::span<const float> x, std::span<float> y, const Geometry& g,
                      std::span<const float> gamma, std::span<const float> beta, float epsilon,
                      std::span<float> batch_mean, std::span<float> batch_variance,
                      const Communicator& comm) {
  forward_training_impl(x, y, g, gamma, beta, epsilon, batch_mean, batch_variance, &comm);
}
void forward_training(std::span<const double> x, std::span<double> y, const Geometry& g,
                      std::span<const double> gamma, std::span<const double> beta, double epsilon,
                      std::span<double> batch_mean, std::span<double> batch_variance,
                      const Communicator& comm) {
  forward_training_impl(x, y, g, gamma, beta, epsilon, batch_mean, batch_variance, &comm);
}

void forward_inference(std::span<const float> x, std::span<float> y, const Geometry& g,
                       std::span<const float> gamma, std::span<const float> beta,
                       std::span<const float> mean, std::span<const float> variance,
                       float epsilon) {
  forward_inference_impl(x, y, g, gamma, beta, mean, variance, epsilon);
}
void forward_inference(std::span<const double> x, std::span<double> y, const Geometry& g,
                       std::span<const double> gamma, std::span<const double> beta,
                       std::span<const double> mean, std::span<const double> variance,
                       double epsilon) {
  forward_inference_impl(x, y, g, gamma, beta, mean, variance, epsilon);
}

void backward(std::span<const float> x, std::span<const float> dy, const Geometry& g,
              std::span<const float> gamma, std::span<const float> batch_mean,
              std::span<const float> batch_variance, float epsilon, std::span<float> dx,
              std::span<float> dgamma, std::span<float> dbeta) {
  backward_impl(x, dy, g, gamma, batch_mean, batch_variance, epsilon, dx, dgamma, dbeta, nullptr);
}
void backward(std::span<const double> x, std::span<const double> dy, const Geometry& g,
              std::span<const double> gamma, std::span<const double> batch_mean,
              std::span<const double> batch_variance, double epsilon, std::span<double> dx,
              std::span<double> dgamma, std::span<double> dbeta) {
  backward_impl(x, dy, g, gamma, batch_mean, batch_variance, epsilon, dx, dgamma, dbeta, nullptr);
}
void backward(std::span<const float> x, std::span<const float> dy, const Geometry& g,
              std::span<const float> gamma, std::span<const float> batch_mean,
              std::span<const float> batch_variance, float epsilon, std::span<float> dx,
              std::span<float> dgamma, std::span<float> dbeta, const Communicator& comm) {
  backward_impl(x, dy, g, gamma, batch_mean, batch_variance, epsilon, dx, dgamma, dbeta, &comm);
}
void backward(std::span<const double> x, std::span<const double> dy, const Geometry& g,
              std::span<const double> gamma, std::span<const double> batch_mean,
              std::span<const double> batch_variance, double epsilon, std::span<double> dx,
              std::span<double> dgamma, std::span<double> dbeta, const Communicator& comm) {
  backward_impl(x, dy, g, gamma, batch_mean, batch_variance, epsilon, dx, dgamma, dbeta, &comm);
}

}  // namespace bnorm
