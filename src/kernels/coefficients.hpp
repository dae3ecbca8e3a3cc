// The per-channel coefficients of the elementwise passes, derived once for every route.
//
// Vocabulary (per channel; M = the number of values the statistics came from, global when
// synchronized; sums run over a channel's M values):
//   invstd      = 1 / sqrt(var + eps)   (0 when var + eps == 0: a constant channel has x_hat = 0)
//   x_hat       = (x - mean) * invstd
//   a           = gamma * invstd        (the "scale")
//   forward:    y = gamma * x_hat + beta = (x - mean) * a + beta
//               double form:  y = (x - mean) * scale + shift,  shift = beta
//               working form: y = ((x - mean_hi) - mean_lo) * a + b, the double mean split into
//               two T values mean_hi + mean_lo (no cancellation when |mean| >> std), b = beta
//   backward:   sum_dy = sum dy (dbeta),  sum_dy_xhat = sum dy * x_hat = invstd * sum_dy_xc
//               (dgamma), sum_dy_xc = sum dy * (x - mean) (what the kernels' sums return)
//               dx = a * (dy - sum_dy / M - x_hat * sum_dy_xhat / M)
//                  = k_dy * dy + k_xc * (x - mean) + k_0,
//               k_dy = a,  k_xc = -a * invstd * sum_dy_xhat / M,  k_0 = -k_dy * sum_dy / M
//               (the working k_0 from the rounded k_dy, so that a constant dy gives dx == 0).
//
// forward_channel and backward_channel derive one channel's coefficients in both forms; the plans
// (plan_normalize, plan_backward: every channel of a call, into scratch, for the phased routes)
// call them, and so do the fused kernels channel by channel: the fused and phased routes round
// identically, so they give bitwise the same output by construction.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "kernels/kernel.hpp"
#include "scratch.hpp"

namespace bnorm::kernels {

// The fast kernels evaluate the elementwise passes in working precision T. That form can lose a
// result the double form (the reference kernel) gets right, in two cases found by
// tests/unit/stress_test.cpp, for which the call (or, in a fused kernel, the channel) is evaluated
// in the double form:
//   - a coefficient that overflows T or falls below its normal range (epsilon = 0 with subnormal
//     data gives 1/sqrt(var) > FLT_MAX; a spread near FLT_MAX gives 1/sqrt(var) < FLT_MIN);
//   - a mean so large that x - mean can overflow T although |x| <= max T: only when |mean| is at
//     least half an ulp of max T (2^103 for float).
// Both need data within a factor ~1e7 of T's range limits, so ordinary calls never take this path.
// 2^e for e >= 0, at compile time (std::ldexp is not constexpr in C++20).
constexpr double power_of_two(int e) {
  double p = 1;
  for (int i = 0; i < e; ++i) p *= 2;
  return p;
}

template <class T>
bool fits_working_precision(double mean, double coefficient) {
  using limits = std::numeric_limits<T>;
  // Half an ulp of max T: |x - mean| < max T + that rounds to a finite T. A constant (this runs
  // for every channel of every call, and tiny calls are timed in microseconds).
  constexpr double kMaxMean = power_of_two(limits::max_exponent - limits::digits - 1);
  const bool coefficient_ok =
      coefficient == 0 || !std::isfinite(coefficient) || std::isnormal(static_cast<T>(coefficient));
  return coefficient_ok && std::fabs(mean) < kMaxMean;
}

inline double invstd_of(double variance, double epsilon) {
  const double v = variance + epsilon;
  return v == 0 ? 0.0 : 1.0 / std::sqrt(v);
}

// a = gamma * invstd, the scale of one channel (Kernel::scales computes it for many at once,
// bitwise the same).
inline double scale_of(double gamma, double variance, double epsilon) {
  return gamma * invstd_of(variance, epsilon);
}

// sum dy * x_hat from the kernels' sum dy * (x - mean).
inline double sum_dy_xhat_of(double sum_dy_xc, double variance, double epsilon) {
  return sum_dy_xc * invstd_of(variance, epsilon);
}

// gamma[c] or beta[c] as a double, `absent` when the array is null.
template <class T>
double value_or(const T* values, std::int64_t c, double absent) {
  return values == nullptr ? absent : static_cast<double>(values[c]);
}

// ---- forward ----

template <class T>
struct ForwardChannel {
  double scale, shift;       // double form (with the double mean)
  T mean_hi, mean_lo, a, b;  // working form
  bool working_precision;    // false: this channel needs the double form
};

template <class T>
ForwardChannel<T> forward_channel(double mean, double scale, double shift) {
  ForwardChannel<T> k;
  k.scale = scale;
  k.shift = shift;
  k.mean_hi = static_cast<T>(mean);
  k.mean_lo = static_cast<T>(mean - static_cast<double>(k.mean_hi));
  k.a = static_cast<T>(scale);
  k.b = static_cast<T>(shift);
  k.working_precision = fits_working_precision<T>(mean, scale);
  return k;
}

template <class T>
struct NormalizePlan {
  NormalizeCoefficients<T> coefficients;
  // False when some channel's data is at the edge of T's range (fits_working_precision): the
  // call must then take the double form (registry.hpp: Form::kDouble).
  bool working_precision = true;
};

// Every channel's forward coefficients, in the calling thread's scratch, with the scales of
// `kernel` (the reference's own scalar loop when it is the one chosen). gamma and beta may be
// null (scale 1, shift 0); mean and variance have `channels` values and must outlive the plan.
template <class T>
NormalizePlan<T> plan_normalize(const Kernel<T>& kernel, std::size_t channels, const T* gamma,
                                const T* beta, const double* mean, const double* variance,
                                double epsilon) {
  const std::size_t C = channels;
  const auto d = scratch<double>(ScratchSlot::kCoefficients, 2 * C);
  // Each working-precision array starts on a cache line (the SIMD kernels load them as vectors).
  const std::size_t stride = padded_count<T>(C);
  const auto w = scratch<T>(ScratchSlot::kCoefficients2, 4 * stride);
  double* scale = d.data();
  double* shift = d.data() + C;
  T* mean_hi = w.data();
  T* mean_lo = w.data() + stride;
  T* a = w.data() + 2 * stride;
  T* b = w.data() + 3 * stride;
  NormalizePlan<T> plan;
  // scale_of for every channel at once (one square root and division per channel dominate tiny
  // calls when done one at a time).
  kernel.scales(variance, gamma, epsilon, scale, C);
  for (std::size_t c = 0; c < C; ++c) {
    shift[c] = value_or(beta, static_cast<std::int64_t>(c), 0.0);
    const ForwardChannel<T> k = forward_channel<T>(mean[c], scale[c], shift[c]);
    mean_hi[c] = k.mean_hi;
    mean_lo[c] = k.mean_lo;
    a[c] = k.a;
    b[c] = k.b;
    plan.working_precision = plan.working_precision && k.working_precision;
  }
  plan.coefficients = NormalizeCoefficients<T>{mean, scale, shift, mean_hi, mean_lo, a, b};
  return plan;
}

// ---- backward ----

template <class T>
struct BackwardChannel {
  double k_dy, k_xc, k_0;   // double form (with the mean as a double)
  T k_dy_w, k_xc_w, k_0_w;  // working form (with the mean as given, in T)
  bool working_precision;   // false: this channel needs the double form
};

// gamma as a double (1 when absent); count = M > 0.
template <class T>
BackwardChannel<T> backward_channel(T mean, T variance, double gamma, double epsilon, double sum_dy,
                                    double sum_dy_xhat, double count) {
  const double invstd = invstd_of(static_cast<double>(variance), epsilon);
  const double a = gamma * invstd;
  BackwardChannel<T> k;
  k.k_dy = a;
  k.k_xc = -a * invstd * (sum_dy_xhat / count);
  k.k_0 = -a * (sum_dy / count);
  k.k_dy_w = static_cast<T>(a);
  k.k_xc_w = static_cast<T>(k.k_xc);
  k.k_0_w = static_cast<T>(-static_cast<double>(k.k_dy_w) * (sum_dy / count));
  k.working_precision = fits_working_precision<T>(static_cast<double>(mean), a);
  return k;
}

template <class T>
struct BackwardPlan {
  BackwardCoefficients<T> coefficients;
  bool working_precision = true;  // as in NormalizePlan
};

// Every channel's backward coefficients, in the calling thread's scratch. gamma may be null.
template <class T>
BackwardPlan<T> plan_backward(std::size_t channels, const T* gamma, const T* mean,
                              const T* variance, double epsilon, const double* sum_dy,
                              const double* sum_dy_xhat, double count) {
  const std::size_t C = channels;
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
  BackwardPlan<T> plan;
  for (std::size_t c = 0; c < C; ++c) {
    const BackwardChannel<T> k = backward_channel<T>(
        mean[c], variance[c], value_or(gamma, static_cast<std::int64_t>(c), 1.0), epsilon,
        sum_dy[c], sum_dy_xhat[c], count);
    mean_d[c] = static_cast<double>(mean[c]);
    mean_w[c] = mean[c];
    k_dy[c] = k.k_dy;
    k_xc[c] = k.k_xc;
    k_0[c] = k.k_0;
    k_dy_w[c] = k.k_dy_w;
    k_xc_w[c] = k.k_xc_w;
    k_0_w[c] = k.k_0_w;
    plan.working_precision = plan.working_precision && k.working_precision;
  }
  plan.coefficients =
      BackwardCoefficients<T>{mean_d, k_dy, k_xc, k_0, mean_w, k_dy_w, k_xc_w, k_0_w};
  return plan;
}

}  // namespace bnorm::kernels
