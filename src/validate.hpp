// Argument checks shared by the public entry points. Each throws bnorm::Error with a message
// that names the function, the argument, its value and what was expected.
#pragma once

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

#include "bnorm/error.hpp"
#include "bnorm/geometry.hpp"

namespace bnorm::validate {

inline std::string describe(const Geometry& g) {
  return fmt::format("{{outer={}, channels={}, inner={}}}", g.outer, g.channels, g.inner);
}

inline void geometry(std::string_view fn, const Geometry& g) {
  if (g.channels <= 0) {
    throw Error(fmt::format("{}: geometry.channels = {}; expected channels >= 1 (geometry {})", fn,
                            g.channels, describe(g)));
  }
  if (g.outer < 0 || g.inner < 0) {
    throw Error(
        fmt::format("{}: geometry {} has a negative extent; expected outer >= 0 and "
                    "inner >= 0",
                    fn, describe(g)));
  }
  const auto max = std::numeric_limits<std::int64_t>::max();
  if ((g.inner != 0 && g.channels > max / g.inner) ||
      (g.outer != 0 && g.channels * g.inner != 0 && g.outer > max / (g.channels * g.inner))) {
    throw Error(
        fmt::format("{}: geometry {} has more elements than int64 can count; expected "
                    "outer*channels*inner <= {}",
                    fn, describe(g), max));
  }
}

// A tensor-sized span.
inline void tensor(std::string_view fn, std::string_view name, std::size_t size,
                   const Geometry& g) {
  if (static_cast<std::int64_t>(size) != g.size()) {
    throw Error(
        fmt::format("{}: {} has {} values; expected outer*channels*inner = {} for "
                    "geometry {}",
                    fn, name, size, g.size(), describe(g)));
  }
}

// A per-channel span; `optional` ones may also be empty.
inline void channel(std::string_view fn, std::string_view name, std::size_t size, const Geometry& g,
                    bool optional) {
  if (static_cast<std::int64_t>(size) == g.channels || (optional && size == 0)) return;
  throw Error(fmt::format("{}: {} has {} values; expected {}{} (one per channel)", fn, name, size,
                          g.channels, optional ? " or 0 (not wanted)" : ""));
}

inline void epsilon(std::string_view fn, double eps) {
  if (!(eps >= 0) || std::isinf(eps)) {
    throw Error(fmt::format("{}: epsilon = {:g}; expected a finite number >= 0", fn, eps));
  }
}

}  // namespace bnorm::validate
