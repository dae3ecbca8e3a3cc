// The bandwidth probe: how fast this machine copies and reads a buffer of a given size with a
// given number of threads. The kernels' GB/s are compared with the copy figure at the tensor's
// own size (a tensor that fits in cache is held to cache speed) and at DRAM size.
//
//   copy  dst = src (memcpy of per-thread slices): 2 * bytes moved per call
//   read  sum of the buffer as 32-bit integers, in four vector accumulators (sum_words)
// Buffers below kProbeParallelBytes are done by one thread, the same policy as the kernels
// (threads cost more than they save there).
#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "bandwidth.hpp"

namespace bnorm::bench {
namespace {
constexpr std::int64_t kProbeParallelBytes = std::int64_t{128} << 10;

// Sum of n words, a cache line per step into four independent vector accumulators: one
// accumulator (what `omp simd` made of a plain loop) waits on each add and measured 28 GB/s even
// from L1, below what one core reads from DRAM, so it under-stated the read bandwidth.
using Words = std::uint32_t __attribute__((vector_size(16)));
std::uint32_t sum_words(const std::uint32_t* p, std::size_t n) {
  constexpr std::size_t kLanes = sizeof(Words) / sizeof(std::uint32_t);
  Words acc[4] = {};
  std::size_t i = 0;
  for (; i + 4 * kLanes <= n; i += 4 * kLanes) {
    for (std::size_t j = 0; j < 4; ++j) {
      Words w;
      std::memcpy(&w, p + i + j * kLanes, sizeof w);
      acc[j] += w;
    }
  }
  const Words total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  std::uint32_t sum = 0;
  for (std::size_t k = 0; k < kLanes; ++k) sum += total[k];
  for (; i < n; ++i) sum += p[i];
  return sum;
}
}  // namespace

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
  const std::size_t n = src_.size();
  const std::uint32_t* p = src_.data();
  if (bytes_ < kProbeParallelBytes) return sum_words(p, n);
  std::uint32_t sum = 0;
#pragma omp parallel reduction(+ : sum)
  {
    const auto threads = static_cast<std::size_t>(omp_get_num_threads());
    const auto t = static_cast<std::size_t>(omp_get_thread_num());
    const std::size_t begin = n * t / threads;
    const std::size_t end = n * (t + 1) / threads;
    sum += sum_words(p + begin, end - begin);
  }
  return sum;
}

}  // namespace bnorm::bench
