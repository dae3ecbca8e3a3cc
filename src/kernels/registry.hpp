// The list of kernel implementations, in order of preference, and the choice among them.
#pragma once

#include "kernels/kernel.hpp"

namespace bnorm::kernels {

// The kernel a call on g runs: the forced one (set_kernel / BNORM_KERNEL) or the first in the
// registry that applies. Throws bnorm::Error when a forced kernel does not apply to g.
const Kernel<float>& select_float(const Geometry& g);
const Kernel<double>& select_double(const Geometry& g);

template <class T>
const Kernel<T>& select(const Geometry& g) {
  if constexpr (sizeof(T) == sizeof(float)) {
    return select_float(g);
  } else {
    return select_double(g);
  }
}

}  // namespace bnorm::kernels
