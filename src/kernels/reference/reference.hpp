// The reference kernels: plain scalar loops with double accumulation, no threads, no chunks.
// They are the oracle every optimized kernel is tested against, accept every geometry, and run
// only their own code (their scales too): forcing them (BNORM_KERNEL=reference) never runs the
// code they judge.
#pragma once

#include <cstddef>

#include "kernels/kernel.hpp"

namespace bnorm::kernels::reference {

template <class T>
void moments(const T* x, const Geometry& g, Moments* moments);
template <class T>
void scales(const double* variance, const T* gamma, double epsilon, double* scale,
            std::size_t channels);
template <class T>
void normalize(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k,
               const Epilogue<T>& epilogue);
template <class T>
void backward_sums(const T* x, const T* dy, const Geometry& g, const T* mean, double* sum_dy,
                   double* sum_dy_xc);
template <class T>
void backward_input(const T* x, const T* dy, T* dx, const Geometry& g,
                    const BackwardCoefficients<T>& k);

// Address of value j (0 <= j < outer*inner, in logical order) of channel c.
inline std::int64_t offset_of(const Geometry& g, std::int64_t c, std::int64_t j) {
  const std::int64_t o = j / g.inner;
  const std::int64_t i = j % g.inner;
  return (o * g.channels + c) * g.inner + i;
}

}  // namespace bnorm::kernels::reference
