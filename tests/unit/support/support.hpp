// Helpers shared by the unit tests: data, thread counts, ulp distances, per-channel views.
#pragma once

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "bnorm/error.hpp"
#include "bnorm/geometry.hpp"
#include "bnorm/kernels.hpp"

namespace bnorm::test {

// Sets the OpenMP thread count for a scope.
class ScopedThreads {
 public:
  explicit ScopedThreads(int n) : previous_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ScopedThreads() { omp_set_num_threads(previous_); }
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  int previous_;
};

// The message of the bnorm::Error that f throws (a test failure if it throws none).
template <class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected bnorm::Error";
  return {};
}

// Whether the kernel named `kernel` handles geometry g.
inline bool kernel_applies(const std::string& kernel, const Geometry& g) {
  const ScopedKernel scoped(kernel);
  try {
    (void)kernel_for(g, false);
    return true;
  } catch (const Error&) {
    return false;
  }
}

// Index of value j of channel c (logical order o-major, i-minor).
inline std::int64_t at(const Geometry& g, std::int64_t c, std::int64_t j) {
  return ((j / g.inner) * g.channels + c) * g.inner + j % g.inner;
}

// Gaussian data whose channel c has mean offset + c * spread and standard deviation 1 + c % 3.
template <class T>
std::vector<T> gaussian(const Geometry& g, std::uint64_t seed, double offset = 0.5,
                        double spread = 0.25) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<T> x(g.size());
  for (std::int64_t c = 0; c < g.channels; ++c) {
    for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
      x[at(g, c, j)] = static_cast<T>(offset + spread * static_cast<double>(c) +
                                      (1.0 + static_cast<double>(c % 3)) * normal(rng));
    }
  }
  return x;
}

template <class T>
std::vector<T> uniform(std::size_t n, std::uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(n);
  for (auto& e : v) e = static_cast<T>(u(rng));
  return v;
}

// The distance between adjacent representable numbers at |v|.
template <class T>
T ulp(T v) {
  v = std::fabs(v);
  return std::nextafter(v, std::numeric_limits<T>::infinity()) - v;
}

// max over channel c of |a - b|, and of |b|.
template <class T>
std::pair<double, double> channel_max_error(const Geometry& g, std::int64_t c,
                                            const std::vector<T>& a, const std::vector<T>& b) {
  double error = 0;
  double magnitude = 0;
  for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
    const auto k = at(g, c, j);
    error = std::max(error, std::fabs(static_cast<double>(a[k]) - static_cast<double>(b[k])));
    magnitude = std::max(magnitude, std::fabs(static_cast<double>(b[k])));
  }
  return {error, magnitude};
}

// Expects a within `ulps` ulp(max |b|) of b in every channel; where the result is a difference of
// larger terms, `scale[c]` (if given) is the magnitude of those terms and replaces max |b| when
// larger.
template <class T>
void expect_close_per_channel(const Geometry& g, const std::vector<T>& a, const std::vector<T>& b,
                              double ulps, const std::string& what,
                              const std::vector<double>& scale = {}) {
  for (std::int64_t c = 0; c < g.channels; ++c) {
    auto [error, magnitude] = channel_max_error(g, c, a, b);
    if (!scale.empty()) magnitude = std::max(magnitude, scale[c]);
    const double bound = ulps * static_cast<double>(ulp(static_cast<T>(magnitude)));
    EXPECT_LE(error, bound) << what << ": channel " << c << " max |error| " << error << " > "
                            << ulps << " ulp of max |ref| " << magnitude;
  }
}

template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace bnorm::test
