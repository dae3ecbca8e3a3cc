// The kernel interface: stateless per-channel loops on raw pointers and a Geometry. Every call
// reaches a kernel through the registry (registry.hpp: kernels::select); the per-channel
// coefficients the elementwise passes apply are derived once, in coefficients.hpp.
#pragma once

#include <cstddef>
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

// What the elementwise forward pass does after y = BN(x) (oneDNN's fuse_norm_relu and
// fuse_norm_add_relu flags): nothing, y = max(0, y), or y = max(0, y + z).
enum class Activation { kNone, kRelu, kAddRelu };

template <class T>
struct Epilogue {
  Activation activation = Activation::kNone;
  const T* z = nullptr;  // the residual of kAddRelu (same geometry as x); y may alias it
};

template <class T>
struct Kernel {
  const char* name;
  // Whether this implementation handles the geometry (e.g. only channels-last).
  bool (*applies)(const Geometry& g);
  // moments[c] = (M, mean, M2) of channel c; M may be 0.
  void (*moments)(const T* x, const Geometry& g, Moments* moments);
  // scale[c] = gamma[c] * invstd_of(variance[c], epsilon) for c < channels, gamma null meaning 1:
  // the per-channel scale of plan_normalize (coefficients.hpp), bitwise the scalar formula.
  void (*scales)(const double* variance, const T* gamma, double epsilon, double* scale,
                 std::size_t channels);
  // y = normalize(x), then the epilogue; y may equal x.
  void (*normalize)(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k,
                    const Epilogue<T>& epilogue);
  // sum_dy[c] = sum dy, sum_dy_xc[c] = sum dy * (x - mean[c]), in double.
  void (*backward_sums)(const T* x, const T* dy, const Geometry& g, const T* mean, double* sum_dy,
                        double* sum_dy_xc);
  // dx from the coefficients; dx may equal dy.
  void (*backward_input)(const T* x, const T* dy, T* dx, const Geometry& g,
                         const BackwardCoefficients<T>& k);

  // Optional fused paths for one process (nullptr when absent). Each computes the statistics and
  // applies them in one sweep, a cache-sized piece at a time, so the data comes from memory once;
  // it returns false (having written nothing) when it does not pay off for g, and the caller runs
  // the phases instead. Outputs are bitwise those of the phases (coefficients.hpp).
  // forward_training: y, and the double batch mean and biased variance per channel.
  // gamma/beta may be null (scale 1, shift 0). Requires g.count_per_channel() != 1.
  bool (*forward_training)(const T* x, T* y, const Geometry& g, const T* gamma, const T* beta,
                           double epsilon, double* mean, double* variance) = nullptr;
  // backward: dx, sum_dy and sum_dy_xhat (= dbeta, dgamma in double) per channel.
  bool (*backward)(const T* x, const T* dy, T* dx, const Geometry& g, const T* gamma, const T* mean,
                   const T* variance, double epsilon, double* sum_dy,
                   double* sum_dy_xhat) = nullptr;
};

}  // namespace bnorm::kernels
