// The reference kernels: plain scalar loops with double accumulation, no threads, no chunks.
// They are the oracle every optimized kernel is tested against, and accept every geometry.
#pragma once

#include "kernels/kernel.hpp"

namespace bnorm::kernels::reference {

template <class T>
void moments(const T* x, const Geometry& g, Moments* moments);
template <class T>
void normalize(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k);
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
