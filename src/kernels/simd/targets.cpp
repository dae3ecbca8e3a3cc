// The Highway targets compiled into the SIMD kernels, for tests and benchmark labels.
#include <hwy/highway.h>
#include <hwy/targets.h>

#include "bnorm/kernels.hpp"
#include "kernels/simd/simd.hpp"

namespace bnorm::kernels::simd {

std::vector<Target> supported_targets() {
  std::vector<Target> targets;
  // HWY_TARGETS is the same set that foreach_target.h compiles in channels_*.cpp.
  for (const std::int64_t bit : hwy::SupportedAndGeneratedTargets()) {
    targets.push_back({bit, hwy::TargetName(bit)});
  }
  return targets;
}

void force_target(std::int64_t bits) {
  hwy::SetSupportedTargetsForTest(bits);
}

std::string current_target() {
  const std::int64_t bits = hwy::SupportedTargets() & HWY_TARGETS;
  return bits == 0 ? "none" : hwy::TargetName(bits & -bits);
}

}  // namespace bnorm::kernels::simd
