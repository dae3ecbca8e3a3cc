// Stress: shapes and values at the edges of what bnorm accepts, through the public API, for every
// kernel. Each result is finite and correct (against a long double two-pass oracle) or, where the
// true value is beyond the type's range, the infinity it rounds to; a crash is never acceptable.
//   - very many channels: C = 1,000,000 with outer 2 (channels last and channels first);
//   - a very long channel: N = 880,801 values of one channel (both layouts, float and double);
//   - more than 2^31 elements: counts and offsets beyond int32 on lazily mapped memory;
//   - subnormal inputs, with epsilon 0 and 1e-5;
//   - float extremes: values of +-3e38, whose differences and variances overflow float.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "bnorm/functional.hpp"
#include "bnorm/kernels.hpp"
#include "bnorm/phases.hpp"
#include "support/support.hpp"

namespace bnorm {
namespace {

using test::at;
using Wide = long double;

// ---------------------------------------------------------------------------------------------
// The oracle, in long double with two passes per channel: forward_training from x alone, and
// backward from the batch statistics forward_training returned (rounded to T), which is what
// backward is a function of. Where float statistics saturate (a variance above FLT_MAX is +inf,
// one below the smallest subnormal is 0), backward's x_hat is then 0, as for a constant channel.

struct Expected {
  std::vector<Wide> mean, variance, dgamma, dbeta, y, dx;
  std::vector<Wide> y_scale, dx_scale;  // magnitudes of the terms each output is computed from
};

template <class T>
Wide invstd_of(Wide variance, double epsilon) {
  const Wide v = variance + static_cast<Wide>(epsilon);
  return v == 0 || std::isinf(v) ? 0 : 1 / std::sqrt(v);
}

template <class T>
Expected oracle(const std::vector<T>& x, const std::vector<T>& dy, const Geometry& g,
                const std::vector<T>& gamma, const std::vector<T>& beta, double epsilon,
                const std::vector<T>& batch_mean, const std::vector<T>& batch_variance) {
  Expected e;
  const auto C = static_cast<std::size_t>(g.channels);
  for (auto* v : {&e.mean, &e.variance, &e.dgamma, &e.dbeta, &e.y_scale, &e.dx_scale}) {
    v->assign(C, 0);
  }
  e.y.assign(x.size(), 0);
  e.dx.assign(x.size(), 0);
  const std::int64_t M = g.count_per_channel();
  for (std::int64_t c = 0; c < g.channels; ++c) {
    const Wide gamma_c = gamma.empty() ? 1 : static_cast<Wide>(gamma[c]);
    const Wide b = beta.empty() ? 0 : static_cast<Wide>(beta[c]);
    // Forward, from x.
    Wide sum = 0;
    for (std::int64_t j = 0; j < M; ++j) sum += x[at(g, c, j)];
    const Wide mean = sum / M;
    Wide m2 = 0;
    for (std::int64_t j = 0; j < M; ++j) m2 += (x[at(g, c, j)] - mean) * (x[at(g, c, j)] - mean);
    const Wide variance = m2 / M;
    const Wide a = gamma_c * invstd_of<T>(variance, epsilon);
    Wide max_x = 0;
    for (std::int64_t j = 0; j < M; ++j) {
      e.y[at(g, c, j)] = (x[at(g, c, j)] - mean) * a + b;
      max_x = std::max(max_x, std::fabs(static_cast<Wide>(x[at(g, c, j)])));
    }
    e.mean[c] = mean;
    e.variance[c] = variance;
    // The fast kernels subtract the mean from x in working precision: x's rounding scales with
    // |x| (and |mean|), not with |x - mean|.
    e.y_scale[c] = std::fabs(a) * (max_x + std::fabs(mean)) + std::fabs(b);
    // Backward, from the statistics as returned.
    const Wide mean_b = batch_mean[c];
    const Wide invstd_b = invstd_of<T>(batch_variance[c], epsilon);
    const Wide a_b = gamma_c * invstd_b;
    Wide sum_dy = 0, sum_dy_xhat = 0, max_dy = 0, max_xhat = 0;
    for (std::int64_t j = 0; j < M; ++j) {
      const Wide xhat = (x[at(g, c, j)] - mean_b) * invstd_b;
      sum_dy += dy[at(g, c, j)];
      sum_dy_xhat += dy[at(g, c, j)] * xhat;
      max_dy = std::max(max_dy, std::fabs(static_cast<Wide>(dy[at(g, c, j)])));
      max_xhat = std::max(max_xhat, std::fabs(xhat));
    }
    for (std::int64_t j = 0; j < M; ++j) {
      const Wide xhat = (x[at(g, c, j)] - mean_b) * invstd_b;
      e.dx[at(g, c, j)] = a_b * (dy[at(g, c, j)] - sum_dy / M - xhat * sum_dy_xhat / M);
    }
    e.dgamma[c] = sum_dy_xhat;
    e.dbeta[c] = sum_dy;
    // dx is a difference of terms of these sizes, and x - mean is taken in working precision.
    e.dx_scale[c] =
        std::fabs(a_b) * (max_dy + std::fabs(sum_dy) / M + max_xhat * std::fabs(sum_dy_xhat) / M +
                          invstd_b * std::fabs(sum_dy_xhat) / M * std::fabs(mean_b));
  }
  return e;
}

// |got - want| <= ulps * eps(T) * scale + allowance (and at least one subnormal step), or, when
// want is beyond T's range, the infinity of its sign.
template <class T>
::testing::AssertionResult close(T got, Wide want, Wide scale, double ulps, Wide allowance = 0) {
  const Wide max = std::numeric_limits<T>::max();
  if (std::fabs(want) > max * (1 + std::numeric_limits<T>::epsilon())) {
    if (std::isinf(got) && (got > 0) == (want > 0)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << got << " where the true value " << static_cast<double>(want)
           << " is beyond the type's range (expected infinity)";
  }
  // Working-precision kernels form y and dx from terms as large as `scale`: when those exceed
  // T's range, the infinity of the true value's sign is the documented result (reliability.md).
  if (std::isinf(got) && (got > 0) == (want > 0) && std::fabs(scale) > max) {
    return ::testing::AssertionSuccess();
  }
  if (!std::isfinite(got)) {
    return ::testing::AssertionFailure()
           << got << " where the true value is " << static_cast<double>(want);
  }
  const Wide bound = std::max<Wide>(std::numeric_limits<T>::denorm_min(),
                                    ulps * std::numeric_limits<T>::epsilon() * std::fabs(scale)) +
                     allowance;
  const Wide error = std::fabs(static_cast<Wide>(got) - want);
  if (error <= bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << got << " vs " << static_cast<double>(want) << ": error " << static_cast<double>(error)
         << " > " << static_cast<double>(bound);
}

// Runs forward_training + backward with the current kernel and checks every output against the
// oracle; reports the first few differences in full and their count.
template <class T>
void expect_matches_oracle(const std::vector<T>& x, const std::vector<T>& dy, const Geometry& g,
                           const std::vector<T>& gamma, const std::vector<T>& beta, double epsilon,
                           const std::string& what) {
  std::vector<T> y(x.size(), T(42)), mean(g.channels), variance(g.channels);
  forward_training(std::span<const T>(x), std::span<T>(y), g, gamma, beta, static_cast<T>(epsilon),
                   mean, variance);
  std::vector<T> dx(x.size(), T(42)), dgamma(g.channels), dbeta(g.channels);
  backward(std::span<const T>(x), std::span<const T>(dy), g, gamma, mean, variance,
           static_cast<T>(epsilon), std::span<T>(dx), dgamma, dbeta);
  const Expected e = oracle(x, dy, g, gamma, beta, epsilon, mean, variance);
  int failures = 0;
  const auto check = [&](::testing::AssertionResult r, const char* output, std::int64_t c,
                         std::int64_t j) {
    if (r) return;
    if (++failures <= 5) {
      ADD_FAILURE() << what << ": " << output << " channel " << c << " value " << j << ": "
                    << r.message();
    }
  };
  constexpr bool is_double = sizeof(T) == sizeof(double);
  // y and dx: float within a few ulp; in double the statistics' accumulation order moves them
  // by up to ~2^-44 relative (as in kernels_test).
  constexpr double y_ulps = is_double ? 512 : 8;
  constexpr double dx_ulps = is_double ? 1024 : 16;
  constexpr Wide sum_relative = 0x1p-44;  // sums in double: their accumulation order
  constexpr Wide tiny = std::numeric_limits<T>::denorm_min();
  const std::int64_t M = g.count_per_channel();
  for (std::int64_t c = 0; c < g.channels; ++c) {
    const Wide sd = std::sqrt(e.variance[c]);
    const Wide gamma_c = gamma.empty() ? 1 : static_cast<Wide>(gamma[c]);
    const Wide a = gamma_c * invstd_of<T>(e.variance[c], epsilon);
    const Wide invstd_b = invstd_of<T>(variance[c], epsilon);
    const Wide a_b = gamma_c * invstd_b;
    check(close<T>(mean[c], e.mean[c], std::fabs(e.mean[c]) + sd, 4), "batch_mean", c, -1);
    check(close<T>(variance[c], e.variance[c], e.variance[c], 4, e.variance[c] * sum_relative * 64),
          "batch_variance", c, -1);
    Wide sum_abs_dy = 0, sum_abs_dy_xhat = 0;
    for (std::int64_t j = 0; j < M; ++j) {
      const Wide d = dy[at(g, c, j)];
      sum_abs_dy += std::fabs(d);
      sum_abs_dy_xhat += std::fabs(d * (x[at(g, c, j)] - static_cast<Wide>(mean[c])) * invstd_b);
    }
    // Sums accumulate in double, in chunks: their error scales with the sum of |terms|; each
    // product dy * (x - mean) below double's normal range is exact only to its smallest step.
    check(close<T>(dbeta[c], e.dbeta[c], std::fabs(e.dbeta[c]), 4, sum_abs_dy * sum_relative),
          "dbeta", c, -1);
    const Wide subnormal_products = M * invstd_b * std::numeric_limits<double>::denorm_min();
    check(close<T>(dgamma[c], e.dgamma[c], std::fabs(e.dgamma[c]), 4,
                   sum_abs_dy_xhat * sum_relative + subnormal_products),
          "dgamma", c, -1);
    // The fast kernels hold the mean as a pair of T: below T's normal range it is exact only to
    // T's smallest step, which moves y by |a| * that step and dx by |a * invstd * mean(dy x_hat)|.
    const Wide y_allowance = std::fabs(a) * tiny * 2;
    const Wide dx_allowance =
        (std::fabs(a_b) + std::fabs(a_b * invstd_b * e.dgamma[c] / M)) * tiny * 4 +
        std::fabs(a_b) * invstd_b * subnormal_products / M;
    for (std::int64_t j = 0; j < M; ++j) {
      const auto k = at(g, c, j);
      check(close<T>(y[k], e.y[k], e.y_scale[c], y_ulps, y_allowance), "y", c, j);
      check(close<T>(dx[k], e.dx[k], e.dx_scale[c], dx_ulps, dx_allowance), "dx", c, j);
    }
  }
  EXPECT_EQ(failures, 0) << what << ": " << failures << " outputs differ from the oracle";
}

// Every kernel that applies to g (the reference included), each checked against the oracle.
template <class T>
void for_every_kernel(const std::vector<T>& x, const std::vector<T>& dy, const Geometry& g,
                      const std::vector<T>& gamma, const std::vector<T>& beta, double epsilon,
                      const std::string& what) {
  int kernels = 0;
  for (const auto& kernel : kernel_names()) {
    if (!test::kernel_applies(kernel, g)) continue;
    const ScopedKernel scoped(kernel);
    expect_matches_oracle(x, dy, g, gamma, beta, epsilon, what + " [" + kernel + "]");
    ++kernels;
  }
  EXPECT_GE(kernels, 2) << what << ": the fast kernels and the reference should all run";
}

// ---------------------------------------------------------------------------------------------
// Large shapes

TEST(Stress, OneMillionChannelsWithOuter2) {
  constexpr std::int64_t C = 1'000'000;
  for (const Geometry g : {Geometry{2, C, 1}, Geometry{2, C, 2}}) {
    const auto x = test::gaussian<float>(g, 31, 0.5, 1e-5);
    const auto dy = test::uniform<float>(g.size(), 32);
    const auto gamma = test::uniform<float>(C, 33, 0.5, 1.5);
    const auto beta = test::uniform<float>(C, 34);
    for_every_kernel(x, dy, g, gamma, beta, 1e-5, "C = 1e6, inner " + std::to_string(g.inner));
  }
}

TEST(Stress, OneChannelOf880801Values) {
  constexpr std::int64_t N = 880'801;
  for (const Geometry g : {Geometry{N, 1, 1}, Geometry{1, 1, N}, Geometry{N / 7, 1, 7}}) {
    const std::string shape =
        "{" + std::to_string(g.outer) + ", 1, " + std::to_string(g.inner) + "}";
    // Mean 1e4 and standard deviation 1: the statistics must not cancel.
    const auto x = test::gaussian<float>(g, 41, 1e4, 0);
    const auto dy = test::uniform<float>(g.size(), 42);
    for_every_kernel(x, dy, g, {}, {}, 1e-5, "float N = 880801 " + shape);
    const auto xd = test::gaussian<double>(g, 43, 1e8, 0);
    const auto dyd = test::uniform<double>(g.size(), 44);
    for_every_kernel(xd, dyd, g, {}, {}, 1e-5, "double N = 880801 " + shape);
  }
}

// ---------------------------------------------------------------------------------------------
// More than 2^31 elements. A float tensor of 2^31 values is 8.6 GB: too much to allocate in CI
// on a shared machine. Memory mapped with MAP_NORESERVE and never written reads as zeros from
// one shared physical page, so the read-only phases (channel_moments, backward_sums) run over
// 2^31 + elements while only the few pages written below take memory. The values are chosen so
// that the expected statistics are exact, and they sit past 2^31 so that an int32 index or count
// anywhere would read the wrong values, read out of bounds or miscount.

class LazyZeros {
 public:
  explicit LazyZeros(std::size_t count) : bytes_(count * sizeof(float)) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : static_cast<float*>(p);
    // Where transparent huge pages are on request, unwritten memory then reads from the 2 MiB
    // huge zero page: 512 times fewer page faults (advice only; failure changes nothing).
    if (data_ != nullptr) madvise(data_, bytes_, MADV_HUGEPAGE);
  }
  ~LazyZeros() {
    if (data_ != nullptr) munmap(data_, bytes_);
  }
  LazyZeros(const LazyZeros&) = delete;
  LazyZeros& operator=(const LazyZeros&) = delete;
  [[nodiscard]] float* data() const { return data_; }

 private:
  std::size_t bytes_;
  float* data_ = nullptr;
};

constexpr std::int64_t k2To31 = std::int64_t{1} << 31;

TEST(Stress, MoreThan2To31ElementsThroughTheReadOnlyPhases) {
  // Channels first: one channel of 2^31 + 4097 values; channels last: 2 channels of 2^30 + 2049.
  for (const Geometry g : {Geometry{1, 1, k2To31 + 4097}, Geometry{k2To31 / 2 + 2049, 2, 1}}) {
    ASSERT_GT(g.size(), k2To31);
    const LazyZeros memory(static_cast<std::size_t>(g.size()));
    if (memory.data() == nullptr) GTEST_SKIP() << "cannot map " << g.size() * 4 << " bytes";
    float* x = memory.data();
    // Per channel, values v at logical positions past 2^30 (past 2^31 in memory for the last).
    const std::vector<std::int64_t> positions = {
        0, g.count_per_channel() / 2 + 3, g.count_per_channel() - 2, g.count_per_channel() - 1};
    const std::vector<double> values = {1024, -3, 7, 512};
    for (std::int64_t c = 0; c < g.channels; ++c) {
      for (std::size_t k = 0; k < positions.size(); ++k) {
        x[at(g, c, positions[k])] = static_cast<float>(values[k] * static_cast<double>(c + 1));
      }
    }
    std::vector<Moments> moments(g.channels);
    channel_moments(std::span<const float>(x, g.size()), g, moments);
    std::vector<float> mean(g.channels), variance(g.channels);
    for (std::int64_t c = 0; c < g.channels; ++c) {
      const auto n = static_cast<Wide>(g.count_per_channel());
      Wide sum = 0, squares = 0;
      for (const double v : values) {
        const Wide value = v * static_cast<Wide>(c + 1);
        sum += value;
        squares += value * value;
      }
      const Wide expected_mean = sum / n;
      const Wide expected_m2 = squares - sum * sum / n;
      EXPECT_EQ(moments[c].count, static_cast<double>(g.count_per_channel())) << c;
      EXPECT_NEAR(moments[c].mean, static_cast<double>(expected_mean),
                  static_cast<double>(1e-13 * expected_mean))
          << c;
      EXPECT_NEAR(moments[c].m2, static_cast<double>(expected_m2),
                  static_cast<double>(1e-12 * expected_m2))
          << c;
      mean[c] = static_cast<float>(moments[c].mean);
      variance[c] = static_cast<float>(moments[c].m2 / moments[c].count);
    }
    // backward_sums with dy = x: sum dy = sum x, sum dy * x_hat = M2 * invstd (up to the float
    // rounding of the mean: sum x * (x - mean_f) = M2 + sum x * (mean - mean_f)).
    std::vector<double> sum_dy(g.channels), sum_dy_xhat(g.channels);
    backward_sums(std::span<const float>(x, g.size()), std::span<const float>(x, g.size()), g, mean,
                  variance, 0.0, sum_dy, sum_dy_xhat);
    for (std::int64_t c = 0; c < g.channels; ++c) {
      Wide sum = 0;
      for (const double v : values) sum += v * static_cast<Wide>(c + 1);
      EXPECT_EQ(sum_dy[c], static_cast<double>(sum)) << c;
      const double invstd = 1 / std::sqrt(static_cast<double>(variance[c]));
      const double expected =
          (moments[c].m2 + static_cast<double>(sum) * (moments[c].mean - mean[c])) * invstd;
      EXPECT_NEAR(sum_dy_xhat[c], expected, 1e-9 * std::fabs(expected)) << c;
    }
  }
}

// The whole forward pass on 2^31 + 1024 values writes 8.6 GB: opt-in (BNORM_STRESS_HUGE=1) on a
// machine with the memory, so that the write path is proven there too. In place, so x is y.
TEST(Stress, HugeForwardTrainingInPlaceWhenEnabled) {
  const char* enabled = std::getenv("BNORM_STRESS_HUGE");
  if (enabled == nullptr || std::string(enabled) != "1") {
    GTEST_SKIP() << "set BNORM_STRESS_HUGE=1 to write a 2^31-element float tensor (needs 9 GB)";
  }
  const Geometry g{2, 2, k2To31 / 4 + 256};
  ASSERT_GT(g.size(), k2To31);
  const LazyZeros memory(static_cast<std::size_t>(g.size()));
  ASSERT_NE(memory.data(), nullptr);
  float* x = memory.data();
  std::span<float> xs(x, static_cast<std::size_t>(g.size()));
  // Channel c: values +-(c + 1) in alternating positions: mean 0, variance (c + 1)^2.
  for (std::int64_t c = 0; c < g.channels; ++c) {
    for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
      x[at(g, c, j)] = static_cast<float>(j % 2 == 0 ? c + 1 : -(c + 1));
    }
  }
  std::vector<float> mean(2), variance(2);
  forward_training(std::span<const float>(xs), xs, g, {}, {}, 0.0f, mean, variance);
  for (std::int64_t c = 0; c < g.channels; ++c) {
    EXPECT_EQ(mean[c], 0.0f);
    EXPECT_EQ(variance[c], static_cast<float>((c + 1) * (c + 1)));
    for (const std::int64_t j : {std::int64_t{0}, std::int64_t{1}, g.count_per_channel() - 1}) {
      EXPECT_EQ(x[at(g, c, j)], j % 2 == 0 ? 1.0f : -1.0f) << c << " " << j;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Subnormal inputs and float extremes

TEST(Stress, SubnormalInputs) {
  constexpr float tiny = std::numeric_limits<float>::denorm_min();  // 1.4e-45
  for (const Geometry g : {Geometry{6, 4, 33}, Geometry{200, 4, 1}}) {
    std::mt19937_64 rng(5);
    std::uniform_int_distribution<int> steps(-1000, 1000);
    std::vector<float> x(g.size());
    for (std::int64_t c = 0; c < g.channels; ++c) {
      for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
        // 0: all subnormal around 0; 1: subnormal around +FLT_MIN; 2: subnormal spread around
        // 1e-3 (a normal mean); 3: the smallest subnormals only (+-1, 0 steps).
        const auto s = static_cast<float>(steps(rng));
        const float v = c == 0   ? s * tiny * 1000
                        : c == 1 ? std::numeric_limits<float>::min() + s * tiny
                        : c == 2 ? 1e-3f + s * tiny
                                 : static_cast<float>(steps(rng) % 2) * tiny;
        x[at(g, c, j)] = v;
      }
    }
    const auto dy = test::uniform<float>(g.size(), 6);
    for (const double epsilon : {1e-5, 0.0}) {
      for_every_kernel(x, dy, g, {}, {}, epsilon,
                       "float subnormal, epsilon " + std::to_string(epsilon));
    }
    // Subnormal upstream gradients.
    std::vector<float> tiny_dy(g.size());
    for (std::size_t i = 0; i < tiny_dy.size(); ++i)
      tiny_dy[i] = static_cast<float>(steps(rng)) * tiny;
    for_every_kernel(test::gaussian<float>(g, 7), tiny_dy, g, {}, {}, 1e-5, "float subnormal dy");
    // double: subnormal values around 0 with epsilon 1e-5 (with epsilon 0, 1/sqrt(variance) of a
    // subnormal double variance exceeds DBL_MAX: see docs/reliability.md).
    std::vector<double> xd(g.size());
    for (auto& v : xd) v = steps(rng) * std::numeric_limits<double>::denorm_min() * 1000;
    const auto dyd = test::uniform<double>(g.size(), 8);
    for_every_kernel(xd, dyd, g, {}, {}, 1e-5, "double subnormal");
  }
}

TEST(Stress, Float32ExtremesInForwardAndBackward) {
  constexpr float big = 3e38f;
  const Geometry layouts[] = {Geometry{6, 6, 5}, Geometry{30, 6, 1}};
  for (const Geometry g : layouts) {
    std::mt19937_64 rng(9);
    std::uniform_real_distribution<double> unit(-1, 1);
    std::vector<float> x(g.size());
    const std::int64_t M = g.count_per_channel();
    for (std::int64_t c = 0; c < g.channels; ++c) {
      for (std::int64_t j = 0; j < M; ++j) {
        float v = 0;
        switch (c) {
          case 0:
            v = j % 2 == 0 ? big : -big;
            break;  // mean 0, variance 9e76
          case 1:
            v = j % 6 == 0 ? -big : big;
            break;  // mean 2e38: x - mean = -5e38
          case 2:
            v = big;
            break;  // constant at 3e38
          case 3:
            v = big - static_cast<float>(j % 3) * 1e31f;
            break;  // large mean, small spread
          case 4:
            v = static_cast<float>(unit(rng) * 3e38);
            break;  // uniform over the range
          default:
            v = static_cast<float>(unit(rng));
            break;  // an ordinary channel
        }
        x[at(g, c, j)] = v;
      }
    }
    const auto dy = test::uniform<float>(g.size(), 10);
    for_every_kernel(x, dy, g, {}, {}, 1e-5, "float +-3e38 x");
    // Extreme upstream gradients with ordinary x, and both extreme.
    std::vector<float> big_dy(g.size());
    for (auto& v : big_dy) v = static_cast<float>(unit(rng) * 3e38);
    for_every_kernel(test::gaussian<float>(g, 11), big_dy, g, {}, {}, 1e-5, "float +-3e38 dy");
    for_every_kernel(x, big_dy, g, {}, {}, 1e-5, "float +-3e38 x and dy");
  }
}

}  // namespace
}  // namespace bnorm
