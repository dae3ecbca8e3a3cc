// Bulk conversions of the public 16-bit types (include/bnorm/half.hpp), on the fastest path.
#include "bnorm/half.hpp"

#include <fmt/format.h>

#include <cstdint>

#include "bnorm/error.hpp"
#include "kernels/simd/convert.hpp"

namespace bnorm {
namespace {

template <class From, class To>
void check(std::span<const From> from, std::span<To> to) {
  if (from.size() != to.size()) {
    throw Error(fmt::format("convert: `to` has {} elements but `from` has {}; expected equal sizes",
                            to.size(), from.size()));
  }
  const auto from_begin = reinterpret_cast<std::uintptr_t>(from.data());
  const auto to_begin = reinterpret_cast<std::uintptr_t>(to.data());
  if (from_begin < to_begin + to.size_bytes() && to_begin < from_begin + from.size_bytes()) {
    throw Error("convert: `from` and `to` overlap; expected separate buffers");
  }
}

}  // namespace

void convert(std::span<const float> from, std::span<bf16> to) {
  check(from, to);
  kernels::simd::narrow(from.data(), to.data(), from.size());
}
void convert(std::span<const float> from, std::span<fp16> to) {
  check(from, to);
  kernels::simd::narrow(from.data(), to.data(), from.size());
}
void convert(std::span<const bf16> from, std::span<float> to) {
  check(from, to);
  kernels::simd::widen(from.data(), to.data(), from.size());
}
void convert(std::span<const fp16> from, std::span<float> to) {
  check(from, to);
  kernels::simd::widen(from.data(), to.data(), from.size());
}

}  // namespace bnorm
