// geometry_of: a shape and a channel axis seen as x[outer][channels][inner].
#include "bnorm/geometry.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <limits>

#include "bnorm/error.hpp"

namespace bnorm {
namespace {

// a * b, or an error naming the shape when it does not fit in int64.
std::int64_t checked_multiply(std::int64_t a, std::int64_t b, std::span<const std::int64_t> shape) {
  if (b != 0 && a > std::numeric_limits<std::int64_t>::max() / b) {
    throw Error(
        fmt::format("shape [{}]: the element count overflows int64; expected a shape with "
                    "at most {} elements",
                    fmt::join(shape, ", "), std::numeric_limits<std::int64_t>::max()));
  }
  return a * b;
}

}  // namespace

Geometry geometry_of(std::span<const std::int64_t> shape, int axis) {
  const auto rank = static_cast<std::int64_t>(shape.size());
  if (rank < 2) {
    throw Error(
        fmt::format("shape [{}]: rank {}; expected rank >= 2 (a batch axis and a channel "
                    "axis)",
                    fmt::join(shape, ", "), rank));
  }
  if (axis < -rank || axis >= rank) {
    throw Error(
        fmt::format("axis = {}: out of range for shape [{}] of rank {}; expected "
                    "{} <= axis < {}",
                    axis, fmt::join(shape, ", "), rank, -rank, rank));
  }
  const std::int64_t a = axis < 0 ? axis + rank : axis;
  for (std::int64_t d = 0; d < rank; ++d) {
    if (shape[d] < 0) {
      throw Error(fmt::format("shape [{}]: dimension {} is {}; expected every dimension >= 0",
                              fmt::join(shape, ", "), d, shape[d]));
    }
  }
  Geometry g{1, shape[a], 1};
  for (std::int64_t d = 0; d < a; ++d) g.outer = checked_multiply(g.outer, shape[d], shape);
  for (std::int64_t d = a + 1; d < rank; ++d) g.inner = checked_multiply(g.inner, shape[d], shape);
  // The whole tensor must be addressable too.
  checked_multiply(checked_multiply(g.outer, g.channels, shape), g.inner, shape);
  return g;
}

Geometry geometry_of(std::initializer_list<std::int64_t> shape, int axis) {
  return geometry_of(std::span<const std::int64_t>(shape.begin(), shape.size()), axis);
}

}  // namespace bnorm
