// bnorm::simd_target_name (kernels.hpp): the public name of the SIMD target that dispatch uses,
// checked against the Highway targets the kernels were compiled for.
#include <gtest/gtest.h>

#include <string>

#include "bnorm/kernels.hpp"
#include "kernels/simd/simd.hpp"

namespace bnorm {
namespace {

using kernels::simd::force_target;
using kernels::simd::supported_targets;

TEST(SimdTargetName, IsTheBestSupportedTargetByDefault) {
  const auto targets = supported_targets();
  ASSERT_FALSE(targets.empty());
  EXPECT_EQ(simd_target_name(), targets.front().name);
}

TEST(SimdTargetName, FollowsTheTargetThatDispatchUses) {
  for (const auto& target : supported_targets()) {
    force_target(target.bits);
    EXPECT_EQ(simd_target_name(), target.name);
  }
  force_target(0);
  EXPECT_EQ(simd_target_name(), supported_targets().front().name);
}

}  // namespace
}  // namespace bnorm
