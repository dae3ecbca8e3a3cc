// Reusable per-thread scratch memory: each slot grows to the largest request seen and is
// never shrunk, so calls in a steady state (same shapes) allocate nothing.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "cache_line.hpp"

namespace bnorm {

// Distinct slots may be held at the same time; a slot is reused by the next request for it.
enum class ScratchSlot : int {
  kPartials = 0,   // kernels: per-group partial results
  kPartials2,      // kernels: a second set of partials
  kAccumulators,   // kernels: a task's per-channel accumulators (any thread, OpenMP workers too)
  kMoments,        // functional: per-channel moments (local, then gathered from every rank)
  kStatistics,     // functional: per-channel double statistics or sums
  kCoefficients,   // functional: per-channel double coefficients
  kCoefficients2,  // functional: per-channel working-precision coefficients
  kCount
};

// Scratch starts on a cache line (and a whole SIMD vector): vector loads of per-channel
// coefficients never straddle two lines.
inline constexpr std::size_t kScratchAlignment = kCacheLineBytes;

// `n` values of T rounded up to whole cache lines: sub-arrays of one scratch span placed at
// multiples of this stay cache-line aligned.
template <class T>
constexpr std::size_t padded_count(std::size_t n) {
  constexpr std::size_t per_line = kScratchAlignment / sizeof(T);
  return (n + per_line - 1) / per_line * per_line;
}

// A span of n default-initialized T in the calling thread's slot (contents unspecified),
// aligned to kScratchAlignment.
template <class T>
std::span<T> scratch(ScratchSlot slot, std::size_t n) {
  static_assert(std::is_trivially_copyable_v<T>);
  static_assert(alignof(T) <= kScratchAlignment);
  // One vector per slot, with room to move the start to the next cache line.
  thread_local std::vector<unsigned char> buffers[static_cast<int>(ScratchSlot::kCount)];
  auto& buffer = buffers[static_cast<int>(slot)];
  const std::size_t bytes = n * sizeof(T) + kScratchAlignment;
  // Exactly the bytes asked for (resize would grow the capacity geometrically).
  if (buffer.size() < bytes) std::vector<unsigned char>(bytes).swap(buffer);
  void* start = buffer.data();
  std::size_t space = buffer.size();
  start = std::align(kScratchAlignment, n * sizeof(T), start, space);
  return {static_cast<T*>(start), n};
}

}  // namespace bnorm
