// FeatureMap: the shape of one example's NHWC feature map (height, width, channels).
#pragma once

#include <cstdint>

namespace bnorm::nn {

struct FeatureMap {
  std::int64_t height = 0, width = 0, channels = 0;
  [[nodiscard]] std::int64_t size() const { return height * width * channels; }
  [[nodiscard]] std::int64_t positions() const { return height * width; }
  bool operator==(const FeatureMap&) const = default;
};

}  // namespace bnorm::nn
