// The per-channel coefficients of a normalization, built once per call for every kernel: the
// double form (the reference's) and the working-precision form (the fast kernels'), from double
// statistics, in the calling thread's scratch. functional.cpp (forward, inference) and fused.cpp
// (BN + ReLU, BN + Add + ReLU) both normalize through it, so they round identically.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/coefficients.hpp"
#include "kernels/kernel.hpp"
#include "kernels/simd/simd.hpp"
#include "scratch.hpp"

namespace bnorm::kernels {

template <class T>
struct NormalizePlan {
  NormalizeCoefficients<T> coefficients;
  // False when some channel's data is at the edge of T's range (fits_working_precision): the
  // call must then take the double form, as the reference kernel does.
  bool working_precision = true;
};

// gamma and beta may be null (scale 1, shift 0); mean and variance have `channels` values.
template <class T>
NormalizePlan<T> plan_normalize(std::size_t channels, const T* gamma, const T* beta,
                                const double* mean, const double* variance, double epsilon) {
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
  // gamma * invstd_of(variance, epsilon) for every channel, in vectors.
  simd::scales(variance, gamma, epsilon, scale, C);
  for (std::size_t c = 0; c < C; ++c) {
    shift[c] = beta == nullptr ? 0.0 : static_cast<double>(beta[c]);
    // forward_channel's values from the scale and shift above (one square root per channel).
    const auto k = forward_channel_of<T>(mean[c], scale[c], shift[c]);
    mean_hi[c] = k.mean_hi;
    mean_lo[c] = k.mean_lo;
    a[c] = k.a;
    b[c] = k.b;
    plan.working_precision = plan.working_precision && fits_working_precision<T>(mean[c], scale[c]);
  }
  plan.coefficients = NormalizeCoefficients<T>{mean, scale, shift, mean_hi, mean_lo, a, b};
  return plan;
}

}  // namespace bnorm::kernels
