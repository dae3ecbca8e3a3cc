// bnorm::simd_target_name (include/bnorm/kernels.hpp): the public face of the SIMD dispatch's
// current target, so that tools and benchmarks can label their figures without the private
// kernels/simd/simd.hpp.
#include "bnorm/kernels.hpp"
#include "kernels/simd/simd.hpp"

namespace bnorm {

std::string simd_target_name() {
  return kernels::simd::current_target();
}

}  // namespace bnorm
