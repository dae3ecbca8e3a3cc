// Per-channel coefficients of the elementwise passes, from double statistics.
//
// The same formulas as src/functional.cpp (which derives them for the kernels it calls): the
// fused kernels, which compute statistics and apply them in one sweep over a channel, derive them
// here, channel by channel. Both must round identically so that a fused and an unfused call give
// bitwise the same output.
//   invstd = 1 / sqrt(var + eps)   (0 when var + eps == 0: a constant channel has x_hat = 0)
//   forward:  a = gamma * invstd,  y = ((x - mean_hi) - mean_lo) * a + beta
//   backward: dx = k_dy * dy + k_xc * (x - mean) + k_0 with
//             k_dy = a, k_xc = -a * invstd * sum_dy_xhat / M, k_0 = -k_dy * sum_dy / M
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

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

template <class T>
struct ForwardChannel {
  T mean_hi, mean_lo, a, b;
};

// The working-precision form from the double one: y = (x - mean) * scale + shift.
template <class T>
ForwardChannel<T> forward_channel_of(double mean, double scale, double shift) {
  ForwardChannel<T> k;
  k.mean_hi = static_cast<T>(mean);
  k.mean_lo = static_cast<T>(mean - static_cast<double>(k.mean_hi));
  k.a = static_cast<T>(scale);
  k.b = static_cast<T>(shift);
  return k;
}

// gamma/beta may be null (scale 1, shift 0).
template <class T>
ForwardChannel<T> forward_channel(double mean, double variance, const T* gamma, const T* beta,
                                  std::int64_t c, double epsilon) {
  const double g = gamma == nullptr ? 1.0 : static_cast<double>(gamma[c]);
  const double shift = beta == nullptr ? 0.0 : static_cast<double>(beta[c]);
  return forward_channel_of<T>(mean, g * invstd_of(variance, epsilon), shift);
}

template <class T>
struct BackwardChannel {
  T k_dy, k_xc, k_0;
  double sum_dy_xhat;  // sum dy * x_hat = invstd * sum dy * (x - mean)
};

template <class T>
BackwardChannel<T> backward_channel(double sum_dy, double sum_dy_xc, T variance, const T* gamma,
                                    std::int64_t c, double epsilon, double count) {
  const double invstd = invstd_of(static_cast<double>(variance), epsilon);
  const double g = gamma == nullptr ? 1.0 : static_cast<double>(gamma[c]);
  const double a = g * invstd;
  BackwardChannel<T> k;
  k.sum_dy_xhat = sum_dy_xc * invstd;
  k.k_dy = static_cast<T>(a);
  k.k_xc = static_cast<T>(-a * invstd * (k.sum_dy_xhat / count));
  k.k_0 = static_cast<T>(-static_cast<double>(k.k_dy) * (sum_dy / count));
  return k;
}

}  // namespace bnorm::kernels
