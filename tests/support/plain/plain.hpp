// The plain twins of the SIMD families (test code): portable C++ loops + OpenMP on the same
// chunking as the SIMD kernels, registered by the test binaries (register.cpp) and forced by
// name. They carry the mutation tripwires (mutants.hpp).
#pragma once

#include "kernels/kernel.hpp"

namespace bnorm::kernels::plain {

bool channels_first_applies(const Geometry& g);
template <class T>
void channels_first_moments(const T* x, const Geometry& g, Moments* moments);
template <class T>
void channels_first_normalize(const T* x, T* y, const Geometry& g,
                              const NormalizeCoefficients<T>& k);
template <class T>
void channels_first_backward_sums(const T* x, const T* dy, const Geometry& g, const T* mean,
                                  double* sum_dy, double* sum_dy_xc);
template <class T>
void channels_first_backward_input(const T* x, const T* dy, T* dx, const Geometry& g,
                                   const BackwardCoefficients<T>& k);

bool channels_last_applies(const Geometry& g);
template <class T>
void channels_last_moments(const T* x, const Geometry& g, Moments* moments);
template <class T>
void channels_last_normalize(const T* x, T* y, const Geometry& g,
                             const NormalizeCoefficients<T>& k);
template <class T>
void channels_last_backward_sums(const T* x, const T* dy, const Geometry& g, const T* mean,
                                 double* sum_dy, double* sum_dy_xc);
template <class T>
void channels_last_backward_input(const T* x, const T* dy, T* dx, const Geometry& g,
                                  const BackwardCoefficients<T>& k);

}  // namespace bnorm::kernels::plain
