// The elementwise passes with their coefficients, for every caller (functional.cpp, fused.cpp):
// plan the per-channel coefficients (kernels/coefficients.hpp), choose the kernel through the
// registry (the working form of the kernel that applies, or the double form for data at the edge
// of T's range), run it. Arguments are validated by the callers.
#pragma once

#include "bnorm/geometry.hpp"
#include "kernels/kernel.hpp"

namespace bnorm::detail {

// y = BN(x) with double statistics, then the epilogue. gamma and beta may be null.
template <class T>
void apply_normalize(const T* x, T* y, const Geometry& g, const T* gamma, const T* beta,
                     const double* mean, const double* variance, double epsilon,
                     const kernels::Epilogue<T>& epilogue = {});

// dx from the (reduced) sums; count = the values the statistics came from. gamma may be null.
template <class T>
void apply_backward_input(const T* x, const T* dy, T* dx, const Geometry& g, const T* gamma,
                          const T* mean, const T* variance, double epsilon, const double* sum_dy,
                          const double* sum_dy_xhat, double count);

}  // namespace bnorm::detail
