// Reusable per-thread scratch memory: each slot grows to the largest request seen and is
// never shrunk, so calls in a steady state (same shapes) allocate nothing.
#pragma once

#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

namespace bnorm {

// Distinct slots may be held at the same time; a slot is reused by the next request for it.
enum class ScratchSlot : int {
  kPartials = 0,   // kernels: per-group partial results
  kPartials2,      // kernels: a second set of partials
  kMoments,        // functional: per-channel moments (local, then gathered from every rank)
  kStatistics,     // functional: per-channel double statistics or sums
  kCoefficients,   // functional: per-channel double coefficients
  kCoefficients2,  // functional: per-channel working-precision coefficients
  kCount
};

// A span of n default-initialized T in the calling thread's slot (contents unspecified).
template <class T>
std::span<T> scratch(ScratchSlot slot, std::size_t n) {
  static_assert(std::is_trivially_copyable_v<T>);
  // One vector per slot, of max_align_t units so every T is suitably aligned.
  thread_local std::vector<std::max_align_t> buffers[static_cast<int>(ScratchSlot::kCount)];
  auto& buffer = buffers[static_cast<int>(slot)];
  const std::size_t units =
      (n * sizeof(T) + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t);
  if (buffer.size() < units) buffer.resize(units);
  return {reinterpret_cast<T*>(buffer.data()), n};
}

}  // namespace bnorm
