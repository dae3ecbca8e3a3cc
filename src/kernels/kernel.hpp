// The kernel interface: stateless per-channel loops on raw pointers and a Geometry.
//
// Math (per channel c, M = outer * inner values):
//   forward:  moments (count, mean, M2)  ->  y = (x - mean) * scale + shift,
//             scale = gamma / sqrt(var + eps), shift = beta.
//   backward: sums (sum dy, sum dy * (x - mean))  ->  dx = k_dy * dy + k_xc * (x - mean) + k_0.
//
// functional.cpp computes the per-channel coefficients once, in double, and hands each kernel
// both forms: the double form for the reference (the oracle) and the working-precision form for
// the fast kernels. The fast form subtracts the mean as a pair hi + lo of working-precision
// numbers: ((x - mean_hi) - mean_lo) * a + b, which stays accurate when |mean| >> std, where the
// shorter x * a + (b - mean * a) cancels.
#pragma once

#include <cstdint>

#include "bnorm/geometry.hpp"
#include "bnorm/phases.hpp"

namespace bnorm::kernels {

// Per-channel coefficients of the elementwise forward pass (arrays of g.channels values).
template <class T>
struct NormalizeCoefficients {
  // Double form: y = (x - mean) * scale + shift.
  const double* mean;
  const double* scale;
  const double* shift;
  // Working form: y = ((x - mean_hi) - mean_lo) * a + b.
  const T* mean_hi;
  const T* mean_lo;
  const T* a;
  const T* b;
};

// Per-channel coefficients of the elementwise backward pass.
template <class T>
struct BackwardCoefficients {
  // Double form: dx = k_dy * dy + k_xc * (x - mean) + k_0.
  const double* mean;
  const double* k_dy;
  const double* k_xc;
  const double* k_0;
  // Working form: dx = k_dy * dy + k_xc * (x - mean) + k_0, with mean as given (working type).
  const T* mean_w;
  const T* k_dy_w;
  const T* k_xc_w;
  const T* k_0_w;
};

template <class T>
struct Kernel {
  const char* name;
  // Whether this implementation handles the geometry (e.g. only channels-last).
  bool (*applies)(const Geometry& g);
  // moments[c] = (M, mean, M2) of channel c; M may be 0.
  void (*moments)(const T* x, const Geometry& g, Moments* moments);
  // y = normalize(x); y may equal x.
  void (*normalize)(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k);
  // sum_dy[c] = sum dy, sum_dy_xc[c] = sum dy * (x - mean[c]), in double.
  void (*backward_sums)(const T* x, const T* dy, const Geometry& g, const T* mean, double* sum_dy,
                        double* sum_dy_xc);
  // dx from the coefficients; dx may equal dy.
  void (*backward_input)(const T* x, const T* dy, T* dx, const Geometry& g,
                         const BackwardCoefficients<T>& k);
};

}  // namespace bnorm::kernels
