// SIMD kernels (Google Highway, runtime dispatch, OpenMP), one family per pair of files in
// Highway's skeleton style: per-target loops in *-inl.h, host side (plans, thresholds, task
// lists, HWY_EXPORT and dispatch) in the .cpp:
//   channels_first.cpp  inner > 1 (NCHW, NCDHW): vectorized along inner, threads over channels
//                       (loops: channels_first-inl.h, short_runs-inl.h)
//   channels_last.cpp   inner == 1 ((N,C), NHWC): vectorized along C, threads over row groups
//                       (loops: channels_last-inl.h, wide_rows-inl.h, strips-inl.h)
//   scales.cpp          the per-channel scales of plan_normalize
// Shared per-target helpers are in simd-inl.h, the export arguments in tasks.hpp, the dispatch
// over storage types in dispatch.hpp. This header never includes Highway.
//
// Extra memory per call (none of it allocated in a steady state: scratch.hpp slots grow once):
//   partial results, in the calling thread's scratch: at most kMaxGroups (64) per channel,
//     moments 32 B each (24 B in the channels-last and short-run rows), backward sums 2 x 8 B
//     each: <= 3 KiB x C;
//   per worker thread: one task's per-channel accumulators in its scratch (3 doubles per channel
//     of a channels-last row or a short-run block), or on the stack a fused channel's group
//     partials (2 KiB).
// It grows with C, not with N*H*W and not with the thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kernel.hpp"

namespace bnorm::kernels::simd {

bool channels_first_applies(const Geometry& g);
template <class T>
void channels_first_moments(const T* x, const Geometry& g, Moments* moments);
template <class T>
void channels_first_normalize(const T* x, T* y, const Geometry& g,
                              const NormalizeCoefficients<T>& k, const Epilogue<T>& e);
template <class T>
void channels_first_backward_sums(const T* x, const T* dy, const Geometry& g, const T* mean,
                                  double* sum_dy, double* sum_dy_xc);
template <class T>
void channels_first_backward_input(const T* x, const T* dy, T* dx, const Geometry& g,
                                   const BackwardCoefficients<T>& k);
template <class T>
bool channels_first_forward_training(const T* x, T* y, const Geometry& g, const T* gamma,
                                     const T* beta, double epsilon, double* mean, double* variance);
template <class T>
bool channels_first_backward(const T* x, const T* dy, T* dx, const Geometry& g, const T* gamma,
                             const T* mean, const T* variance, double epsilon, double* sum_dy,
                             double* sum_dy_xhat);

bool channels_last_applies(const Geometry& g);
template <class T>
void channels_last_moments(const T* x, const Geometry& g, Moments* moments);
template <class T>
void channels_last_normalize(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k,
                             const Epilogue<T>& e);
template <class T>
void channels_last_backward_sums(const T* x, const T* dy, const Geometry& g, const T* mean,
                                 double* sum_dy, double* sum_dy_xc);
template <class T>
void channels_last_backward_input(const T* x, const T* dy, T* dx, const Geometry& g,
                                  const BackwardCoefficients<T>& k);

// scale[c] = gamma[c] / sqrt(variance[c] + epsilon) (0 where variance + epsilon == 0), gamma null
// meaning 1, for c < channels: bitwise scale_of's values, in vectors (scales.cpp).
template <class T>
void scales(const double* variance, const T* gamma, double epsilon, double* scale,
            std::size_t channels);

// ---- for tests: the Highway targets compiled into this binary ----
struct Target {
  std::int64_t bits;  // Highway's target bit (HWY_AVX2, HWY_AVX3, ...)
  std::string name;
};
// The compiled targets that this CPU supports, best first.
std::vector<Target> supported_targets();
// Restricts dispatch to `bits` (one of supported_targets()); 0 restores the CPU's best.
void force_target(std::int64_t bits);
// The target that dispatch currently uses.
std::string current_target();

}  // namespace bnorm::kernels::simd
