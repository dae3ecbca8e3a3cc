// The plain twins of the SIMD families (test code): portable C++ loops + OpenMP on the same
// chunking as the SIMD kernels, registered by the test binaries (register.cpp) and forced by
// name. They carry the mutation tripwires (mutants.hpp).
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/kernel.hpp"

namespace bnorm::kernels::plain {

// The epilogue on the value v of y at index `at` (as the SIMD kernels: + z, then max(0, .)).
template <class T>
T with_epilogue(T v, const Epilogue<T>& e, std::int64_t at) {
  if (e.activation == Activation::kAddRelu) v += e.z[at];
  if (e.activation != Activation::kNone) v = std::max(v, T(0));
  return v;
}

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

}  // namespace bnorm::kernels::plain
