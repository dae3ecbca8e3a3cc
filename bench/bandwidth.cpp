// The bandwidth probe: how fast this machine copies and reads a buffer of a given size with a
// given number of threads. The kernels' GB/s are compared with the copy figure at the tensor's
// own size (a tensor that fits in cache is held to cache speed) and at DRAM size.
//
//   copy  dst = src (memcpy of per-thread slices): 2 * bytes moved per call
//   read  sum of the buffer as 32-bit integers (vectorizes without reassociation concerns)
// Buffers below kProbeParallelBytes are done by one thread, the same policy as the kernels
// (threads cost more than they save there).
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "bandwidth.hpp"

namespace bnorm::bench {
namespace {
constexpr std::int64_t kProbeParallelBytes = std::int64_t{128} << 10;
}

Probe::Probe(std::int64_t bytes)
    : bytes_(bytes), src_(static_cast<std::size_t>(bytes / 4) + 1, 1u), dst_(src_.size(), 0u) {}

void Probe::copy() {
  const auto n = src_.size();
  if (bytes_ < kProbeParallelBytes) {
    std::memcpy(dst_.data(), src_.data(), n * sizeof(std::uint32_t));
    return;
  }
#pragma omp parallel
  {
    const auto threads = static_cast<std::size_t>(omp_get_num_threads());
    const auto t = static_cast<std::size_t>(omp_get_thread_num());
    const std::size_t begin = n * t / threads;
    const std::size_t end = n * (t + 1) / threads;
    std::memcpy(dst_.data() + begin, src_.data() + begin, (end - begin) * sizeof(std::uint32_t));
  }
}

std::uint32_t Probe::read() {
  const auto n = static_cast<std::int64_t>(src_.size());
  const std::uint32_t* p = src_.data();
  std::uint32_t sum = 0;
  if (bytes_ < kProbeParallelBytes) {
#pragma omp simd reduction(+ : sum)
    for (std::int64_t i = 0; i < n; ++i) sum += p[i];
    return sum;
  }
#pragma omp parallel for simd reduction(+ : sum) schedule(static)
  for (std::int64_t i = 0; i < n; ++i) sum += p[i];
  return sum;
}

}  // namespace bnorm::bench
