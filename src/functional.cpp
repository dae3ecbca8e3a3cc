// The functional API and its phases: validate the arguments, derive per-channel coefficients
// in double, and run the selected kernel. This file is the only caller of kernels.
//
//   forward_training = channel_moments -> [communicator] -> normalize
//   backward         = backward_sums   -> [communicator] -> backward_input
//
// Coefficients (per channel, double):
//   invstd = 1 / sqrt(var + eps)   (0 when var + eps == 0: a constant channel has x_hat = 0)
//   a      = gamma * invstd
//   forward:  y  = (x - mean) * a + beta
//   backward: dx = a * dy - a * invstd * (sum_dy_xhat / M) * (x - mean) - a * sum_dy / M
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "bnorm/error.hpp"
#include "bnorm/functional.hpp"
#include "bnorm/phases.hpp"
#include "kernels/coefficients.hpp"
#include "kernels/normalize_coefficients.hpp"
#include "kernels/reference/reference.hpp"
#include "kernels/registry.hpp"
#include "scratch.hpp"
#include "validate.hpp"

namespace bnorm {

Moments merge(const Moments& a, const Moments& b) {
  if (b.count == 0) return a;
  if (a.count == 0) return b;
  const double n = a.count + b.count;
  const double delta = b.mean - a.mean;
  // delta == 0 keeps the mean and adds the M2s exactly (and avoids inf * 0 for infinite means).
  if (delta == 0) return Moments{n, a.mean, a.m2 + b.m2};
  return Moments{n, a.mean + delta * (b.count / n),
                 a.m2 + b.m2 + delta * delta * (a.count * b.count / n)};
}

void merge_ranks(std::span<const Moments> per_rank, int ranks, std::span<Moments> merged) {
  if (ranks < 1 || per_rank.size() != static_cast<std::size_t>(ranks) * merged.size()) {
    throw Error(
        fmt::format("merge_ranks: per_rank has {} entries for {} ranks; expected ranks >= 1 "
                    "and ranks x channels = {} x {}",
                    per_rank.size(), ranks, ranks, merged.size()));
  }
  const std::size_t channels = merged.size();
  for (std::size_t c = 0; c < channels; ++c) {
    Moments acc;
    for (int r = 0; r < ranks; ++r) acc = merge(acc, per_rank[r * channels + c]);
    merged[c] = acc;
  }
}

namespace {

template <class T>
double gamma_of(std::span<const T> gamma, std::int64_t c) {
  return gamma.empty() ? 1.0 : static_cast<double>(gamma[c]);
}

using kernels::invstd_of;

template <class T>
void channel_moments_impl(std::span<const T> x, const Geometry& g, std::span<Moments> moments) {
  constexpr std::string_view fn = "channel_moments";
  validate::geometry(fn, g);
  validate::tensor(fn, "x", x.size(), g);
  validate::channel(fn, "moments", moments.size(), g, false);
  kernels::select<T>(g).moments(x.data(), g, moments.data());
}

// Normalizes with double statistics; arguments already validated by the caller.
template <class T>
void normalize_unchecked(std::span<const T> x, std::span<T> y, const Geometry& g,
                         std::span<const T> gamma, std::span<const T> beta,
                         std::span<const double> mean, std::span<const double> variance,
                         double epsilon) {
  const auto plan = kernels::plan_normalize<T>(
      static_cast<std::size_t>(g.channels), gamma.empty() ? nullptr : gamma.data(),
      beta.empty() ? nullptr : beta.data(), mean.data(), variance.data(), epsilon);
  const kernels::NormalizeCoefficients<T>& k = plan.coefficients;
  const bool working_precision = plan.working_precision;
  if (working_precision) {
    kernels::select<T>(g).normalize(x.data(), y.data(), g, k);
  } else {
    kernels::reference::normalize<T>(x.data(), y.data(), g, k);
  }
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
  normalize_unchecked(x, y, g, gamma, beta, mean, variance, epsilon);
}

void check_training_count(std::string_view fn, double count, const Geometry& g, bool global) {
  if (count == 1 && global) {
    // Every rank throws after the same collective, with the same message: no local geometry.
    throw Error(fmt::format(
        "{}: Expected more than 1 value per channel when training, got 1 value per channel "
        "(global, over all ranks); expected a global outer*inner >= 2, or 0 for an empty batch",
        fn));
  }
  if (count == 1) {
    throw Error(fmt::format(
        "{}: Expected more than 1 value per channel when training, got {} value per channel "
        "(geometry {}); expected outer*inner >= 2, or 0 for an empty batch",
        fn, count, validate::describe(g)));
  }
}

// The kernel's fused forward (statistics and normalization in one sweep), for one process;
// false when the kernel has none or declines g, and the caller runs the phases.
template <class T>
bool fused_forward(std::string_view fn, std::span<const T> x, std::span<T> y, const Geometry& g,
                   std::span<const T> gamma, std::span<const T> beta, T epsilon,
                   std::span<T> batch_mean, std::span<T> batch_variance) {
  const kernels::Kernel<T>& kernel = kernels::select<T>(g);
  if (kernel.forward_training == nullptr || g.size() == 0) return false;
  check_training_count(fn, static_cast<double>(g.count_per_channel()), g, false);
  const auto C = static_cast<std::size_t>(g.channels);
  const auto statistics = scratch<double>(ScratchSlot::kStatistics, 2 * C);
  if (!kernel.forward_training(x.data(), y.data(), g, gamma.empty() ? nullptr : gamma.data(),
                               beta.empty() ? nullptr : beta.data(), epsilon, statistics.data(),
                               statistics.data() + C)) {
    return false;
  }
  for (std::size_t c = 0; c < C; ++c) {
    batch_mean[c] = static_cast<T>(statistics[c]);
    batch_variance[c] = static_cast<T>(statistics[C + c]);
  }
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
  check_training_count(fn, static_cast<double>(g.count_per_channel()), g, false);
  const auto C = static_cast<std::size_t>(g.channels);
  const auto sums = scratch<double>(ScratchSlot::kStatistics, 2 * C);
  if (!kernel.backward(x.data(), dy.data(), dx.data(), g, gamma.empty() ? nullptr : gamma.data(),
                       mean.data(), variance.data(), epsilon, sums.data(), sums.data() + C)) {
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
  const auto C = static_cast<std::size_t>(g.channels);
  const bool synchronized = comm != nullptr && comm->size() > 1;
  const int ranks = synchronized ? comm->size() : 1;
  if (!synchronized &&
      fused_forward(fn, x, y, g, gamma, beta, epsilon, batch_mean, batch_variance)) {
    return;
  }
  // [local moments (C) | every rank's moments (ranks x C)]: local, then merged in rank order.
  const auto all = scratch<Moments>(ScratchSlot::kMoments, C * (1 + (synchronized ? ranks : 0)));
  std::span<Moments> moments = all.first(C);
  kernels::select<T>(g).moments(x.data(), g, moments.data());
  if (synchronized) {
    static_assert(sizeof(Moments) == 3 * sizeof(double));
    const std::span<Moments> gathered = all.subspan(C);
    comm->allgather(std::span<const double>(&moments[0].count, 3 * C),
                    std::span<double>(&gathered[0].count, 3 * C * ranks));
    merge_ranks(gathered, ranks, moments);
  }
  const double count = moments[0].count;
  check_training_count(fn, count, g, synchronized);
  const auto statistics = scratch<double>(ScratchSlot::kStatistics, 2 * C);
  const std::span<double> mean = statistics.first(C);
  const std::span<double> variance = statistics.subspan(C);
  for (std::size_t c = 0; c < C; ++c) {
    mean[c] = moments[c].mean;
    variance[c] = count > 0 ? moments[c].m2 / count : 0.0;
    batch_mean[c] = static_cast<T>(mean[c]);
    batch_variance[c] = static_cast<T>(variance[c]);
  }
  if (g.size() > 0) {
    normalize_unchecked<T>(x, y, g, gamma, beta, mean, variance, epsilon);
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
    sum_dy_xhat[c] *= invstd_of(static_cast<double>(variance[c]), epsilon);
  }
}

template <class T>
void backward_input_unchecked(std::span<const T> x, std::span<const T> dy, const Geometry& g,
                              std::span<const T> gamma, std::span<const T> mean,
                              std::span<const T> variance, double epsilon,
                              std::span<const double> sum_dy, std::span<const double> sum_dy_xhat,
                              double count, std::span<T> dx) {
  if (g.size() == 0) return;
  const auto C = static_cast<std::size_t>(g.channels);
  const auto d = scratch<double>(ScratchSlot::kCoefficients, 4 * C);
  // Each working-precision array starts on a cache line (the SIMD kernels load them as vectors);
  // the mean is copied there too, rather than read from the caller's array at any alignment.
  const std::size_t stride = padded_count<T>(C);
  const auto w = scratch<T>(ScratchSlot::kCoefficients2, 4 * stride);
  double* mean_d = d.data();
  double* k_dy = d.data() + C;
  double* k_xc = d.data() + 2 * C;
  double* k_0 = d.data() + 3 * C;
  T* k_dy_w = w.data();
  T* k_xc_w = w.data() + stride;
  T* k_0_w = w.data() + 2 * stride;
  T* mean_w = w.data() + 3 * stride;
  bool working_precision = true;
  for (std::size_t c = 0; c < C; ++c) {
    const double invstd = invstd_of(static_cast<double>(variance[c]), epsilon);
    const double a = gamma_of(gamma, c) * invstd;
    mean_d[c] = static_cast<double>(mean[c]);
    mean_w[c] = mean[c];
    working_precision = working_precision && kernels::fits_working_precision<T>(mean_d[c], a);
    k_dy[c] = a;
    k_xc[c] = -a * invstd * (sum_dy_xhat[c] / count);
    k_0[c] = -a * (sum_dy[c] / count);
    k_dy_w[c] = static_cast<T>(a);
    k_xc_w[c] = static_cast<T>(k_xc[c]);
    // From the rounded a, so that a constant dy gives k_dy_w * dy + k_0_w == 0 exactly.
    k_0_w[c] = static_cast<T>(-static_cast<double>(k_dy_w[c]) * (sum_dy[c] / count));
  }
  const kernels::BackwardCoefficients<T> k{mean_d, k_dy, k_xc, k_0, mean_w, k_dy_w, k_xc_w, k_0_w};
  if (working_precision) {
    kernels::select<T>(g).backward_input(x.data(), dy.data(), dx.data(), g, k);
  } else {
    kernels::reference::backward_input<T>(x.data(), dy.data(), dx.data(), g, k);
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
  check_training_count(fn, count, g, synchronized);
  for (std::size_t c = 0; c < C; ++c) {
    if (!dgamma.empty()) dgamma[c] = static_cast<T>(sum_dy_xhat[c]);
    if (!dbeta.empty()) dbeta[c] = static_cast<T>(sum_dy[c]);
  }
  backward_input_unchecked<T>(x, dy, g, gamma, mean, variance, epsilon, sum_dy, sum_dy_xhat, count,
                              dx);
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
  normalize_unchecked<T>(x, y, g, gamma, beta, statistics.first(C), statistics.subspan(C), epsilon);
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
  backward_input_unchecked(x, dy, g, gamma, mean, variance, epsilon, sum_dy, sum_dy_xhat, count,
                           dx);
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
