// The reference twin of the fused BN + ReLU and BN + Add + ReLU forward: the double formula,
// rounded once, as the oracle for the SIMD epilogue (fused.cpp picks it when the reference
// kernel is forced).
#pragma once

#include "kernels/kernel.hpp"

namespace bnorm::kernels::reference {

// y = max(0, (x - mean) * scale + shift [+ z]) in double; z may be null. y may alias x or z.
template <class T>
void normalize_relu(const T* x, const T* z, T* y, const Geometry& g,
                    const NormalizeCoefficients<T>& k);

}  // namespace bnorm::kernels::reference
