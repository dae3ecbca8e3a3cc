// Memory the kernels take per call, measured by counting every operator new in this process
// (this executable replaces the global allocation functions):
//   - a call in a steady state (the same shapes again) allocates nothing;
//   - the scratch a call needs depends on C (and on the ranks of a synchronized call), never on
//     N*H*W: the peak memory a first call on a fresh thread holds is the same for a batch 4x
//     larger, and at most kScratchBytesPerChannel * C + kScratchBytesFixed. The figures are
//     printed, for docs/kernels.md ("Memory per call").
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "bnorm/functional.hpp"
#include "bnorm/fused.hpp"
#include "support/support.hpp"

namespace {

std::atomic<std::int64_t> g_allocations{0};
std::atomic<std::int64_t> g_live{0};  // bytes allocated and not yet freed
std::atomic<std::int64_t> g_peak{0};  // the most g_live has been since the last reset

// Every block carries a header in front of what it returns: the size asked for and the header's
// own length (one alignment unit, at least 64 bytes), in its last two words. Live bytes are then
// the bytes requested, whatever the allocator rounds them up to.
void* counted(std::size_t n, std::size_t alignment) {
  const std::size_t header = alignment > 64 ? alignment : 64;
  auto* block = static_cast<unsigned char*>(
      std::aligned_alloc(header, header + (n + header - 1) / header * header));
  if (block == nullptr) throw std::bad_alloc();
  unsigned char* p = block + header;
  reinterpret_cast<std::size_t*>(p)[-1] = n;
  reinterpret_cast<std::size_t*>(p)[-2] = header;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  const auto bytes = static_cast<std::int64_t>(n);
  const std::int64_t live = g_live.fetch_add(bytes) + bytes;
  std::int64_t peak = g_peak.load();
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
  return p;
}

void release(void* p) {
  if (p == nullptr) return;
  const std::size_t n = static_cast<std::size_t*>(p)[-1];
  const std::size_t header = static_cast<std::size_t*>(p)[-2];
  g_live.fetch_sub(static_cast<std::int64_t>(n));
  std::free(static_cast<unsigned char*>(p) - header);
}

}  // namespace

void* operator new(std::size_t n) {
  return counted(n, alignof(std::max_align_t));
}
void* operator new[](std::size_t n) {
  return counted(n, alignof(std::max_align_t));
}
void* operator new(std::size_t n, std::align_val_t a) {
  return counted(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept {
  release(p);
}
void operator delete[](void* p) noexcept {
  release(p);
}
void operator delete(void* p, std::size_t /*n*/) noexcept {
  release(p);
}
void operator delete[](void* p, std::size_t /*n*/) noexcept {
  release(p);
}
void operator delete(void* p, std::align_val_t /*a*/) noexcept {
  release(p);
}
void operator delete[](void* p, std::align_val_t /*a*/) noexcept {
  release(p);
}
void operator delete(void* p, std::size_t /*n*/, std::align_val_t /*a*/) noexcept {
  release(p);
}
void operator delete[](void* p, std::size_t /*n*/, std::align_val_t /*a*/) noexcept {
  release(p);
}

namespace bnorm {
namespace {

// The bound the test holds the scratch to (per calling thread; OpenMP workers use only stack):
// per channel, up to kMaxGroups = 64 partial moments (32 bytes: count, the mean as a pair of
// doubles, M2; kernels/chunking.hpp) and 64 partial sums (8 bytes),
// plus the moments, statistics and coefficients, and a slot's old and new buffer while it grows
// (under 1 KiB together); plus each slot's alignment padding.
constexpr std::int64_t kScratchBytesPerChannel = 64 * 32 + 64 * 8 + 1024;
constexpr std::int64_t kScratchBytesFixed = 4096;

// Allocations of one of everything a training step and an inference call do.
template <class T>
struct Calls {
  Geometry g;
  std::vector<T> x, dy, y, gamma, beta, mean, var, dgamma, dbeta;
  std::vector<std::uint8_t> mask;

  explicit Calls(const Geometry& geometry) : g(geometry) {
    x = test::gaussian<T>(g, 1);
    dy = test::uniform<T>(static_cast<std::size_t>(g.size()), 2);
    y.assign(static_cast<std::size_t>(g.size()), T(0));
    gamma = test::uniform<T>(static_cast<std::size_t>(g.channels), 3, 0.5, 1.5);
    beta = test::uniform<T>(static_cast<std::size_t>(g.channels), 4);
    mean.assign(static_cast<std::size_t>(g.channels), T(0));
    var = mean;
    dgamma = mean;
    dbeta = mean;
    mask.assign(static_cast<std::size_t>(g.size()), 0);
  }

  void run() {
    const std::span<const T> cx(x);
    forward_training(cx, std::span<T>(y), g, gamma, beta, T(1e-3), mean, var);
    forward_inference(cx, std::span<T>(y), g, gamma, beta, mean, var, T(1e-3));
    backward(cx, std::span<const T>(dy), g, gamma, mean, var, T(1e-3), std::span<T>(y), dgamma,
             dbeta);
    forward_training_relu(cx, std::span<T>(y), g, gamma, beta, T(1e-3), mean, var, mask);
    backward_relu(cx, std::span<const T>(dy), mask, g, gamma, mean, var, T(1e-3), std::span<T>(y),
                  dgamma, dbeta);
  }
};

// Peak live operator-new bytes during the first run() on a fresh thread (empty scratch), over
// what was live before it.
template <class T>
std::int64_t first_call_bytes(const Geometry& g) {
  Calls<T> calls(g);  // inputs allocated here, before measuring
  std::int64_t bytes = 0;
  std::thread worker([&] {
    const std::int64_t before = g_live.load();
    g_peak.store(before);
    calls.run();
    bytes = g_peak.load() - before;
  });
  worker.join();
  return bytes;
}

std::string describe(const Geometry& g) {
  return "{" + std::to_string(g.outer) + ", " + std::to_string(g.channels) + ", " +
         std::to_string(g.inner) + "}";
}

TEST(Memory, SteadyStateCallsAllocateNothing) {
  const test::ScopedThreads threads(2);
  for (const Geometry& g : {Geometry{8, 64, 3136}, Geometry{25088, 64, 1}, Geometry{64, 100, 1},
                            Geometry{256, 1024, 1}, Geometry{8, 1024, 49}}) {
    Calls<float> f(g);
    f.run();  // scratch grows to this shape
    const std::int64_t before = g_allocations.load();
    f.run();
    f.run();
    EXPECT_EQ(g_allocations.load() - before, 0) << "float " << describe(g);
    Calls<double> d(g);
    d.run();
    const std::int64_t before_double = g_allocations.load();
    d.run();
    EXPECT_EQ(g_allocations.load() - before_double, 0) << "double " << describe(g);
  }
}

TEST(Memory, ScratchDependsOnChannelsNotOnTheBatch) {
  const test::ScopedThreads threads(2);
  // Batches past the point where every channel has kMaxGroups partial results, then 4x that,
  // both taking the same path.
  struct Case {
    Geometry small, large;
  };
  const Case cases[] = {
      // NCHW: 128 leaves of 4096 per channel (2 MiB: the two-phase path, not the fused one).
      {Geometry{128, 8, 4096}, Geometry{512, 8, 4096}},
      {Geometry{131072, 8, 1}, Geometry{524288, 8, 1}},   // NHWC: 64 tiles of 2048 rows
      {Geometry{4096, 256, 1}, Geometry{16384, 256, 1}},  // (N, C): 64 tiles of 64 rows
      {Geometry{64, 100, 1}, Geometry{64, 100, 1}},       // tiny: one tile
  };
  // One-time initialization in the process (function-local statics, the kernel registry) is
  // not per-call scratch: done here, before measuring.
  Calls<float>(Geometry{4, 3, 5}).run();
  for (const Case& c : cases) {
    const std::int64_t small = first_call_bytes<float>(c.small);
    const std::int64_t large = first_call_bytes<float>(c.large);
    const std::int64_t bound = kScratchBytesPerChannel * c.small.channels + kScratchBytesFixed;
    EXPECT_EQ(large, small) << describe(c.small) << " vs " << describe(c.large);
    EXPECT_LE(small, bound) << describe(c.small);
    std::printf("peak scratch for C = %lld: %lld bytes (%.0f per channel), same for N*H*W x4\n",
                static_cast<long long>(c.small.channels), static_cast<long long>(small),
                static_cast<double>(small) / static_cast<double>(c.small.channels));
  }
}

}  // namespace
}  // namespace bnorm
