// bnorm/version.hpp carries CMake's project(bnorm VERSION ...) (passed to the tests separately).
#include "bnorm/version.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>

#include "bnorm/bnorm.hpp"

namespace bnorm {
namespace {

TEST(Version, IsTheProjectVersion) {
  EXPECT_STREQ(BNORM_VERSION_STRING, BNORM_PROJECT_VERSION);
  EXPECT_EQ(std::string(kVersionString), BNORM_PROJECT_VERSION);
  EXPECT_EQ(fmt::format("{}.{}.{}", kVersion.major, kVersion.minor, kVersion.patch),
            BNORM_PROJECT_VERSION);
  static_assert(BNORM_VERSION_MAJOR == kVersion.major && BNORM_VERSION_MINOR == kVersion.minor);
}

}  // namespace
}  // namespace bnorm
