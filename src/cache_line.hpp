// The cache line the kernels and the scratch memory are laid out for: 64 bytes on every x86-64
// and on the ARM cores Highway targets here. Prefetches touch one address per line; scratch
// arrays start on a line, so vector loads of per-channel coefficients never straddle two.
#pragma once

#include <cstddef>

namespace bnorm {

inline constexpr std::size_t kCacheLineBytes = 64;

// Values of T per cache line.
template <class T>
inline constexpr std::size_t kValuesPerLine = kCacheLineBytes / sizeof(T);

}  // namespace bnorm
