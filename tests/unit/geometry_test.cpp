// geometry_of: shapes of every rank seen as x[outer][channels][inner], and its errors.
#include "bnorm/geometry.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "bnorm/error.hpp"
#include "support/support.hpp"

namespace bnorm {
namespace {

using test::message_of;

using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(Geometry, ChannelsFirstLayouts) {
  EXPECT_EQ(geometry_of({8, 16}, 1), (Geometry{8, 16, 1}));            // NC
  EXPECT_EQ(geometry_of({8, 16, 10}, 1), (Geometry{8, 16, 10}));       // NCL
  EXPECT_EQ(geometry_of({8, 16, 5, 7}, 1), (Geometry{8, 16, 35}));     // NCHW
  EXPECT_EQ(geometry_of({8, 16, 2, 5, 7}, 1), (Geometry{8, 16, 70}));  // NCDHW
}

TEST(Geometry, ChannelsLastLayouts) {
  EXPECT_EQ(geometry_of({8, 10, 16}, -1), (Geometry{80, 16, 1}));       // NLC
  EXPECT_EQ(geometry_of({8, 5, 7, 16}, -1), (Geometry{280, 16, 1}));    // NHWC
  EXPECT_EQ(geometry_of({8, 2, 5, 7, 16}, 4), (Geometry{560, 16, 1}));  // NDHWC
  EXPECT_TRUE(geometry_of({8, 5, 7, 16}, 3).channels_last());
  EXPECT_FALSE(geometry_of({8, 16, 5, 7}, 1).channels_last());
}

TEST(Geometry, NegativeAndMiddleAxes) {
  EXPECT_EQ(geometry_of({2, 3, 4, 5}, -2), geometry_of({2, 3, 4, 5}, 2));
  EXPECT_EQ(geometry_of({2, 3, 4, 5}, -4), (Geometry{1, 2, 60}));
  EXPECT_EQ(geometry_of({2, 3, 4, 5}, 2), (Geometry{6, 4, 5}));
}

TEST(Geometry, CountsAndZeroSizedDimensions) {
  const Geometry g = geometry_of({0, 3, 4, 5}, 1);
  EXPECT_EQ(g.count_per_channel(), 0);
  EXPECT_EQ(g.size(), 0);
  EXPECT_EQ(geometry_of({2, 3, 0}, 1).count_per_channel(), 0);
  EXPECT_EQ(geometry_of({2, 3, 4}, 1).count_per_channel(), 8);
}

TEST(Geometry, RejectsRankBelowTwo) {
  EXPECT_THAT(message_of([] { (void)geometry_of({5}, 0); }),
              AllOf(HasSubstr("rank 1"), HasSubstr("expected rank >= 2")));
  EXPECT_THAT(message_of([] { (void)geometry_of(std::vector<std::int64_t>{}, 0); }),
              HasSubstr("rank 0"));
}

TEST(Geometry, RejectsAxisOutOfRange) {
  EXPECT_THAT(message_of([] {
                (void)geometry_of({2, 3, 4}, 3);
              }),
              AllOf(HasSubstr("axis = 3"), HasSubstr("-3 <= axis < 3")));
  EXPECT_THAT(message_of([] { (void)geometry_of({2, 3, 4}, -4); }), HasSubstr("axis = -4"));
}

TEST(Geometry, RejectsNegativeDimension) {
  EXPECT_THAT(message_of([] {
                (void)geometry_of({2, -3, 4}, 1);
              }),
              AllOf(HasSubstr("dimension 1 is -3"), HasSubstr("expected every dimension >= 0")));
}

TEST(Geometry, RejectsSizeThatOverflowsInt64) {
  const std::int64_t big = std::int64_t{1} << 40;
  EXPECT_THAT(message_of([&] {
                (void)geometry_of({big, big, 1}, 1);
              }),
              HasSubstr("overflows int64"));
  EXPECT_THAT(message_of([&] {
                (void)geometry_of({2, big, big}, 0);
              }),
              HasSubstr("overflows int64"));
  // outer * channels * inner overflowing while each part fits is caught too.
  EXPECT_THAT(message_of([&] {
                (void)geometry_of({big, big / 2, 2}, 1);
              }),
              HasSubstr("overflows int64"));
  // A zero dimension makes the product 0, whatever the others are.
  EXPECT_EQ(geometry_of({1, big, big, 0}, 1).size(), 0);
}

}  // namespace
}  // namespace bnorm
