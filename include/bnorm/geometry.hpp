// Geometry: any tensor shape plus a channel axis, seen as x[outer][channels][inner].
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>

namespace bnorm {

// A tensor of any rank whose channel axis is `axis`, seen as a row-major x[o][c][i]:
//   (N,C) and NHWC  -> {N*H*W, C, 1}   (channels last: inner == 1)
//   NCHW            -> {N, C, H*W}     (channels first: inner > 1)
//   NCDHW           -> {N, C, D*H*W}
// Each channel holds outer*inner values: the batch over which statistics are taken.
struct Geometry {
  std::int64_t outer = 0;
  std::int64_t channels = 0;
  std::int64_t inner = 0;

  // M: the number of values of one channel.
  [[nodiscard]] constexpr std::int64_t count_per_channel() const { return outer * inner; }
  // Number of elements of the whole tensor.
  [[nodiscard]] constexpr std::int64_t size() const { return outer * channels * inner; }
  [[nodiscard]] constexpr bool channels_last() const { return inner == 1; }
  friend constexpr bool operator==(const Geometry&, const Geometry&) = default;
};

// Requires: shape.size() >= 2; -rank <= axis < rank; every dimension >= 0;
//           the element count fits in int64.
// Ensures:  outer = product of dims before axis, channels = shape[axis],
//           inner = product of dims after axis.
// Throws:   bnorm::Error naming the offending argument otherwise.
Geometry geometry_of(std::span<const std::int64_t> shape, int axis);
Geometry geometry_of(std::initializer_list<std::int64_t> shape, int axis);

}  // namespace bnorm
