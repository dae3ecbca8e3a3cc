// The implementations compiled into this bnorm-bench: bnorm first, then each baseline whose
// package was found at configure time (bench/CMakeLists.txt).
#include "bench.hpp"

namespace bnorm::bench {

std::vector<Implementation> implementations() {
  std::vector<Implementation> impls = {bnorm_implementation("")};
#if defined(BNORM_BENCH_WITH_DNNL)
  impls.push_back(onednn_implementation());
#endif
#if defined(BNORM_BENCH_WITH_TORCH)
  impls.push_back(libtorch_implementation());
#endif
  return impls;
}

}  // namespace bnorm::bench
