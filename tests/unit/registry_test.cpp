// The shipped kernel registry (this binary registers no test kernels): the SIMD families in order
// of preference, then the reference, each chosen where it applies; test-only kernels are added by
// the other test binaries (tests/support/plain) and are never part of the library.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "bnorm/error.hpp"
#include "bnorm/kernels.hpp"
#include "support/support.hpp"

namespace bnorm {
namespace {

TEST(Registry, ShipsTheSimdFamiliesThenTheReference) {
  EXPECT_EQ(kernel_names(),
            (std::vector<std::string>{"simd:channels_last", "simd:channels_first", "reference"}));
  EXPECT_EQ(kernel_for(Geometry{8, 3, 1}, false), "simd:channels_last");
  EXPECT_EQ(kernel_for(Geometry{8, 3, 5}, true), "simd:channels_first");
  const ScopedKernel forced("reference");
  EXPECT_EQ(kernel_for(Geometry{8, 3, 5}, false), "reference");
}

TEST(Registry, TestKernelsAreNotShipped) {
  EXPECT_THAT(test::message_of([] { set_kernel("plain:channels_last"); }),
              ::testing::AllOf(::testing::HasSubstr("unknown kernel"),
                               ::testing::HasSubstr("'simd:channels_last', "
                                                    "'simd:channels_first', 'reference'")));
}

}  // namespace
}  // namespace bnorm
