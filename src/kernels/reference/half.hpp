// The reference (scalar oracle) kernels for 16-bit storage: x, y, dy, dx, z in bf16 or fp16,
// gamma, beta and the statistics in float (the mixed precision of PyTorch's bf16 batch norm and
// Keras' mixed_bfloat16). Not yet called by functional.cpp: they are the twins the 16-bit SIMD
// kernels will be tested against once the kernels take a storage type (issue 15).
//
// They convert through float exactly as the kernels will: every 16-bit value is widened exactly
// (to float, then double); statistics and sums accumulate in double as the float reference does;
// every result is evaluated in double, rounded once to float (what the float kernels produce)
// and then to the storage type, round to nearest even (bnorm/half.hpp), as the kernels narrow
// their float result on store. Statistics returned to the caller are the double values rounded
// to float, as in the float API.
#pragma once

#include <cstdint>

#include "bnorm/geometry.hpp"
#include "bnorm/half.hpp"
#include "bnorm/phases.hpp"

namespace bnorm::kernels::reference::half {

// ---- phases (T16 = bf16 or fp16; per-channel arrays of g.channels values) ----

// moments[c] = (M, mean, M2) of channel c, in double, two passes with the residual correction.
template <class T16>
void moments(const T16* x, const Geometry& g, Moments* moments);

// y = (x - mean) * scale + shift [+ z], then relu if asked; z may be null; y may alias x or z.
template <class T16>
void normalize(const T16* x, const T16* z, T16* y, const Geometry& g, const double* mean,
               const double* scale, const double* shift, bool relu);

// sum_dy[c] = sum dy, sum_dy_xc[c] = sum dy * (x - mean[c]), in double.
template <class T16>
void backward_sums(const T16* x, const T16* dy, const Geometry& g, const float* mean,
                   double* sum_dy, double* sum_dy_xc);

// dx = k_dy * dy + k_xc * (x - mean) + k_0 (double coefficients); dx may alias dy.
template <class T16>
void backward_input(const T16* x, const T16* dy, T16* dx, const Geometry& g, const double* mean,
                    const double* k_dy, const double* k_xc, const double* k_0);

// ---- whole operations, the semantics of bnorm/functional.hpp with float parameters ----
// gamma / beta may be null (scale 1, shift 0); dgamma / dbeta may be null (not wanted).

// Batch statistics of x, y = BN(x); batch_mean and batch_variance (biased) in float.
template <class T16>
void forward_training(const T16* x, T16* y, const Geometry& g, const float* gamma,
                      const float* beta, float epsilon, float* batch_mean, float* batch_variance);

// y = gamma * (x - mean) / sqrt(variance + epsilon) + beta with the given float statistics.
template <class T16>
void forward_inference(const T16* x, T16* y, const Geometry& g, const float* gamma,
                       const float* beta, const float* mean, const float* variance, float epsilon);

// The backward of forward_training: dx in T16, dgamma = sum dy * x_hat, dbeta = sum dy in float.
template <class T16>
void backward(const T16* x, const T16* dy, const Geometry& g, const float* gamma, const float* mean,
              const float* variance, float epsilon, T16* dx, float* dgamma, float* dbeta);

}  // namespace bnorm::kernels::reference::half
