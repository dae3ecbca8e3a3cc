// Numerics of the statistics and the normalization (docs/numerics.md):
// - exact by construction: values in pairs symmetric about a mean with few mantissa bits give
//   batch_mean and batch_variance bitwise equal to the analytic values;
// - accuracy against a long double two-pass oracle on N(m, 1) data, and a naive one-pass variance
//   (a test-only mutant) that these checks must reject;
// - constant channels, extreme magnitudes, NaN isolation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "bnorm/error.hpp"
#include "bnorm/functional.hpp"
#include "bnorm/kernels.hpp"
#include "bnorm/phases.hpp"
#include "support/problems.hpp"
#include "support/support.hpp"

namespace bnorm {
namespace {

using test::at;
using test::ScopedThreads;

// ---------------------------------------------------------------------------------------------
// Exact statistics

// Channel c: mean (c + 1) * 1.5 + 1024, deviations +-(k % 7 + 1) * 0.25 in adjacent pairs of the
// channel's logical order. Every value, sum and square is exact in float.
template <class T>
std::vector<T> symmetric_pairs(const Geometry& g) {
  std::vector<T> x(g.size());
  for (std::int64_t c = 0; c < g.channels; ++c) {
    for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
      const double deviation = static_cast<double>((j / 2) % 7 + 1) * 0.25;
      x[at(g, c, j)] = static_cast<T>(1024 + 1.5 * static_cast<double>(c + 1) +
                                      (j % 2 == 0 ? deviation : -deviation));
    }
  }
  return x;
}

TEST(ExactStatistics, BitwiseEqualToAnalyticValuesForBothLayoutsAndAnyThreadCount) {
  const std::vector<test::Problem> problems = {
      {{4, 3, 8, 8}, 1}, {{3, 5, 6, 6}, 1},  {{3, 6, 6, 5}, -1}, {{12000, 3}, 1},
      {{2, 3, 4100}, 1}, {{2, 4100, 3}, -1}, {{6, 257}, 1},      {{2, 33, 2, 2}, 1}};
  for (const auto& kernel : kernel_names()) {
    const ScopedKernel scoped(kernel);
    for (const auto& p : problems) {
      const Geometry g = p.geometry();
      if (!test::kernel_applies(kernel, g)) continue;
      const auto x = symmetric_pairs<float>(g);
      for (const int threads : {1, 2, 3}) {
        const ScopedThreads scoped_threads(threads);
        std::vector<float> y(x.size()), mean(g.channels), variance(g.channels);
        forward_training(x, y, g, {}, {}, 1e-5f, mean, variance);
        for (std::int64_t c = 0; c < g.channels; ++c) {
          long double square_sum = 0;
          for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
            const long double d = static_cast<long double>((j / 2) % 7 + 1) * 0.25L;
            square_sum += d * d;
          }
          const auto expected_mean = static_cast<float>(1024 + 1.5 * static_cast<double>(c + 1));
          const auto expected_variance =
              static_cast<float>(square_sum / static_cast<long double>(g.count_per_channel()));
          EXPECT_EQ(mean[c], expected_mean)
              << kernel << " " << p.name() << " threads " << threads << " channel " << c;
          EXPECT_EQ(variance[c], expected_variance)
              << kernel << " " << p.name() << " threads " << threads << " channel " << c;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Accuracy against a long double oracle

// What an implementation produced for one input: statistics and y (gamma 1, beta 0).
template <class T>
struct Output {
  std::vector<double> mean, variance;
  std::vector<T> y;
};
template <class T>
using Implementation = std::function<Output<T>(const std::vector<T>& x, const Geometry& g)>;

template <class T>
Output<T> through_forward_training(const std::vector<T>& x, const Geometry& g) {
  std::vector<T> y(x.size()), mean(g.channels), variance(g.channels);
  forward_training(std::span<const T>(x), std::span<T>(y), g, {}, {}, T(1e-5), mean, variance);
  return {std::vector<double>(mean.begin(), mean.end()),
          std::vector<double>(variance.begin(), variance.end()), y};
}

// The mutant: E[x^2] - E[x]^2 in one pass (double accumulation), then the real normalize phase.
template <class T>
Output<T> naive_one_pass(const std::vector<T>& x, const Geometry& g) {
  Output<T> out;
  out.mean.resize(g.channels);
  out.variance.resize(g.channels);
  const auto n = static_cast<double>(g.count_per_channel());
  for (std::int64_t c = 0; c < g.channels; ++c) {
    double sum = 0, square_sum = 0;
    for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
      const auto v = static_cast<double>(x[at(g, c, j)]);
      sum += v;
      square_sum += v * v;
    }
    out.mean[c] = sum / n;
    out.variance[c] = std::max(0.0, square_sum / n - out.mean[c] * out.mean[c]);
  }
  out.y.resize(x.size());
  normalize(std::span<const T>(x), std::span<T>(out.y), g, {}, {}, out.mean, out.variance, 1e-5);
  return out;
}

// N(m, 1) data per channel, rounded to T; with outlier_period > 0, every value whose index in its
// channel's logical order is a multiple of outlier_period is m + outlier instead.
template <class T>
std::vector<T> shifted_normal(const Geometry& g, double m, std::uint64_t seed,
                              std::int64_t outlier_period = 0, double outlier = 0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<T> x(g.size());
  for (auto& v : x) v = static_cast<T>(m + normal(rng));
  if (outlier_period > 0) {
    for (std::int64_t c = 0; c < g.channels; ++c) {
      for (std::int64_t j = 0; j < g.count_per_channel(); j += outlier_period) {
        x[at(g, c, j)] = static_cast<T>(m + outlier);
      }
    }
  }
  return x;
}

struct Accuracy {
  double variance_relative_error = 0;  // worst channel
  double y_error_in_ulps = 0;          // worst channel: max|y - y_ref| / ulp(max|y_ref|)
};

template <class T>
Accuracy measure(const Implementation<T>& implementation, const Geometry& g, double m,
                 std::int64_t outlier_period = 0, double outlier = 0) {
  const auto x = shifted_normal<T>(g, m, 99, outlier_period, outlier);
  const Output<T> out = implementation(x, g);
  Accuracy worst;
  for (std::int64_t c = 0; c < g.channels; ++c) {
    const auto M = static_cast<long double>(g.count_per_channel());
    long double sum = 0;
    for (std::int64_t j = 0; j < g.count_per_channel(); ++j) sum += x[at(g, c, j)];
    const long double mean = sum / M;
    long double m2 = 0;
    for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
      const long double d = x[at(g, c, j)] - mean;
      m2 += d * d;
    }
    const long double variance = m2 / M;
    const long double invstd = 1 / std::sqrt(variance + static_cast<long double>(T(1e-5)));
    worst.variance_relative_error =
        std::max(worst.variance_relative_error,
                 static_cast<double>(std::fabs(out.variance[c] - variance) / variance));
    long double error = 0, magnitude = 0;
    for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
      const long double y_ref = (x[at(g, c, j)] - mean) * invstd;
      error = std::max(error, std::fabs(out.y[at(g, c, j)] - y_ref));
      magnitude = std::max(magnitude, std::fabs(y_ref));
    }
    worst.y_error_in_ulps = std::max(
        worst.y_error_in_ulps, static_cast<double>(error / test::ulp(static_cast<T>(magnitude))));
  }
  return worst;
}

const std::vector<test::Problem>& accuracy_problems() {
  static const std::vector<test::Problem> problems = {
      {{4, 3, 32, 32}, 1},
      {{4, 32, 32, 3}, -1},
      {{2000, 7}, 1},
      // Several leaves per channel, so the merges count: 16,384 values per channel in 4 NCHW
      // leaves; 2,048 rows in 8 NHWC tiles of wide (256- and 512-byte) rows; 256 runs of 7x7 in
      // 4 leaves of the float short-run path.
      {{4, 2, 64, 64}, 1},
      {{8, 16, 16, 64}, -1},
      {{256, 3, 7, 7}, 1}};
  return problems;
}

TEST(Accuracy, Float32VarianceWithin1e6ForMeansUpTo1e6) {
  for (const auto& kernel : kernel_names()) {
    const ScopedKernel scoped(kernel);
    for (const auto& p : accuracy_problems()) {
      if (!test::kernel_applies(kernel, p.geometry())) continue;
      for (const double m : {0.0, 1e2, 1e4, 1e5, 1e6}) {
        const auto a = measure<float>(through_forward_training<float>, p.geometry(), m);
        std::printf("fp32 %-22s %-28s m=%-6g variance rel. error %.2e, y error %.2f ulp\n",
                    kernel.c_str(), p.name().c_str(), m, a.variance_relative_error,
                    a.y_error_in_ulps);
        EXPECT_LE(a.variance_relative_error, 1e-6) << kernel << " " << p.name() << " m=" << m;
        if (m <= 1e5) {
          EXPECT_LE(a.y_error_in_ulps, 4.0) << kernel << " " << p.name() << " m=" << m;
        }
      }
    }
  }
}

TEST(Accuracy, Float64VarianceWithin1e12AtMean1e8) {
  for (const auto& kernel : kernel_names()) {
    const ScopedKernel scoped(kernel);
    for (const auto& p : accuracy_problems()) {
      if (!test::kernel_applies(kernel, p.geometry())) continue;
      const auto a = measure<double>(through_forward_training<double>, p.geometry(), 1e8);
      std::printf("fp64 %-22s %-28s m=1e8   variance rel. error %.2e\n", kernel.c_str(),
                  p.name().c_str(), a.variance_relative_error);
      EXPECT_LE(a.variance_relative_error, 1e-12) << kernel << " " << p.name();
    }
  }
}

// The channels-last kernels take each tile's moments in one pass about a shift, the channel's
// value in the tile's first row (docs/numerics.md). The worst case for that is an outlier as the
// shift: one value 1e4 standard deviations away at the start of every stretch of 256 values,
// which is every tile's first row for tiles of any power of two up to 256 rows. The variance must
// stay as accurate as on clean data.
TEST(Accuracy, AnOutlierAtTheStartOfEveryTileCostsNoAccuracy) {
  for (const auto& kernel : kernel_names()) {
    const ScopedKernel scoped(kernel);
    for (const auto& p : accuracy_problems()) {
      if (!test::kernel_applies(kernel, p.geometry())) continue;
      for (const std::int64_t period : {256, 16}) {
        const auto f =
            measure<float>(through_forward_training<float>, p.geometry(), 1e3, period, 1e4);
        const auto d =
            measure<double>(through_forward_training<double>, p.geometry(), 1e8, period, 1e4);
        std::printf("%-22s %-28s outlier every %3lld: variance rel. error fp32 %.2e, fp64 %.2e\n",
                    kernel.c_str(), p.name().c_str(), static_cast<long long>(period),
                    f.variance_relative_error, d.variance_relative_error);
        EXPECT_LE(f.variance_relative_error, 1e-6) << kernel << " " << p.name();
        EXPECT_LE(f.y_error_in_ulps, 4.0) << kernel << " " << p.name();
        EXPECT_LE(d.variance_relative_error, 1e-12) << kernel << " " << p.name();
      }
    }
  }
}

// The checks above have teeth: the naive one-pass variance fails them.
TEST(Accuracy, NaiveOnePassVarianceMutantIsCaught) {
  const Geometry g = accuracy_problems()[0].geometry();
  const auto float32 = measure<float>(naive_one_pass<float>, g, 1e6);
  EXPECT_GT(float32.variance_relative_error, 1e-6) << "fp32 check would not catch the mutant";
  const auto float64 = measure<double>(naive_one_pass<double>, g, 1e8);
  EXPECT_GT(float64.variance_relative_error, 1e-12) << "fp64 check would not catch the mutant";
  const auto y = measure<float>(naive_one_pass<float>, g, 1e5);
  std::printf(
      "mutant: fp32 m=1e6 variance rel. error %.2e; fp64 m=1e8 %.2e; fp32 m=1e5 y %.1f ulp\n",
      float32.variance_relative_error, float64.variance_relative_error, y.y_error_in_ulps);
  EXPECT_GT(y.y_error_in_ulps, 4.0) << "y check would not catch the mutant";
}

// ---------------------------------------------------------------------------------------------
// Constant channels and extremes

TEST(ConstantChannels, ExactMeanZeroVarianceYEqualsBetaZeroGradients) {
  const std::vector<float> constants = {0.0f, 0.1f, 1e7f, 3.3e7f, -1e30f};
  for (const auto& kernel : kernel_names()) {
    const ScopedKernel scoped(kernel);
    for (const Geometry g : {Geometry{3, 5, 7}, Geometry{21, 5, 1}}) {
      if (!test::kernel_applies(kernel, g)) continue;
      std::vector<float> x(g.size());
      for (std::int64_t c = 0; c < g.channels; ++c) {
        for (std::int64_t j = 0; j < g.count_per_channel(); ++j) x[at(g, c, j)] = constants[c];
      }
      const std::vector<float> gamma = {1.0f, 2.0f, -0.5f, 3.0f, 0.25f};
      const std::vector<float> beta = {0.5f, -1.0f, 2.0f, 0.0f, 7.0f};
      for (const float epsilon : {0.0f, 1e-5f}) {
        std::vector<float> y(x.size()), mean(5), variance(5);
        forward_training(x, y, g, gamma, beta, epsilon, mean, variance);
        // A constant upstream gradient: dx = a * (dy - mean(dy)) is exactly 0.
        std::vector<float> dy(x.size(), 0.75f), dx(x.size()), dgamma(5), dbeta(5);
        backward(x, dy, g, gamma, mean, variance, epsilon, dx, dgamma, dbeta);
        for (std::int64_t c = 0; c < g.channels; ++c) {
          EXPECT_EQ(mean[c], constants[c]) << kernel;
          EXPECT_EQ(variance[c], 0.0f) << kernel;
          EXPECT_EQ(dgamma[c], 0.0f) << kernel;
          for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
            EXPECT_EQ(y[at(g, c, j)], beta[c]) << kernel << " eps " << epsilon;
            EXPECT_EQ(dx[at(g, c, j)], 0.0f) << kernel << " eps " << epsilon;
          }
        }
        // Any upstream gradient with epsilon 0: no NaN, dx == 0 (x_hat is defined as 0).
        if (epsilon == 0) {
          const auto random_dy = test::uniform<float>(x.size(), 3);
          backward(x, random_dy, g, gamma, mean, variance, epsilon, dx, dgamma, dbeta);
          for (const float v : dx) EXPECT_EQ(v, 0.0f) << kernel;
          for (const float v : dgamma) EXPECT_EQ(v, 0.0f) << kernel;
        }
      }
    }
  }
}

TEST(Extremes, HugeMagnitudesGiveFiniteCorrectResults) {
  for (const auto& kernel : kernel_names()) {
    const ScopedKernel scoped(kernel);
    // float: values up to 1e30. Channel 0 sits at 1e30, where float values are 7.6e22 apart, so
    // its variance (~1e46) exceeds FLT_MAX: batch_variance is +inf (documented), yet y, computed
    // from the double statistics, is finite and normalized. Channels 1, 2 have spreads that fit.
    // Channel 3 sits at 2e38, where two values already overflow a float sum (float-lane sums
    // must fall back to double there; 2x4x256 takes the per-channel leaves of channels_first).
    for (const Geometry g : {Geometry{4, 4, 50}, Geometry{2, 4, 256}, Geometry{200, 4, 1}}) {
      if (!test::kernel_applies(kernel, g)) continue;
      std::vector<float> x(g.size());
      std::mt19937_64 rng(7);
      std::normal_distribution<double> normal;
      for (std::int64_t c = 0; c < g.channels; ++c) {
        const double centres[] = {1e30, -1e18, 0.0, 2e38};
        const double spreads[] = {1e23, 1e17, 1e17, 1e36};
        const double centre = centres[c];
        const double spread = spreads[c];
        for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
          x[at(g, c, j)] = static_cast<float>(centre + spread * normal(rng));
        }
      }
      std::vector<float> y(x.size()), mean(4), variance(4);
      forward_training(x, y, g, {}, {}, 1e-5f, mean, variance);
      std::vector<float> dy = test::uniform<float>(x.size(), 1), dx(x.size()), dg(4), db(4);
      backward(x, dy, g, {}, mean, variance, 1e-5f, dx, dg, db);
      for (std::int64_t c = 0; c < 4; ++c) {
        EXPECT_TRUE(std::isfinite(mean[c])) << kernel << " " << c;
        if (c == 0 || c == 3) {
          EXPECT_EQ(variance[c], std::numeric_limits<float>::infinity()) << kernel;
        } else {
          EXPECT_TRUE(std::isfinite(variance[c])) << kernel << " " << c;
        }
        EXPECT_TRUE(std::isfinite(dg[c]) && std::isfinite(db[c])) << kernel;
        double sum_y = 0, sum_y2 = 0;
        for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
          const float v = y[at(g, c, j)];
          ASSERT_TRUE(std::isfinite(v)) << kernel;
          ASSERT_TRUE(std::isfinite(dx[at(g, c, j)])) << kernel;
          sum_y += v;
          sum_y2 += static_cast<double>(v) * v;
        }
        // Normalized output: mean 0 and variance 1 (to float resolution of x at that scale).
        const auto M = static_cast<double>(g.count_per_channel());
        EXPECT_NEAR(sum_y / M, 0.0, 1e-3) << kernel << " channel " << c;
        EXPECT_NEAR(sum_y2 / M, 1.0, 1e-3) << kernel << " channel " << c;
      }
    }
    // double: |x| up to 1e30 with spread 1e30.
    const Geometry g{6, 2, 9};
    if (!test::kernel_applies(kernel, g)) continue;
    std::vector<double> x = test::uniform<double>(g.size(), 4, -1e30, 1e30);
    std::vector<double> y(x.size()), mean(2), variance(2);
    forward_training(x, y, g, {}, {}, 1e-5, mean, variance);
    for (const double v : y) EXPECT_TRUE(std::isfinite(v) && std::fabs(v) < 10) << kernel;
    for (const double v : variance) EXPECT_TRUE(std::isfinite(v) && v > 1e58) << kernel;
  }
}

TEST(Extremes, NanInOneChannelDoesNotLeakIntoOthers) {
  for (const auto& kernel : kernel_names()) {
    const ScopedKernel scoped(kernel);
    for (const Geometry g : {Geometry{4, 5, 33}, Geometry{300, 5, 1}}) {
      if (!test::kernel_applies(kernel, g)) continue;
      auto x = test::gaussian<float>(g, 3);
      x[at(g, 2, 7)] = std::numeric_limits<float>::quiet_NaN();
      std::vector<float> y(x.size()), mean(5), variance(5);
      forward_training(x, y, g, {}, {}, 1e-5f, mean, variance);
      auto dy = test::uniform<float>(x.size(), 2);
      dy[at(g, 4, 1)] = std::numeric_limits<float>::infinity();
      std::vector<float> dx(x.size()), dgamma(5), dbeta(5);
      backward(x, dy, g, {}, mean, variance, 1e-5f, dx, dgamma, dbeta);
      for (std::int64_t c = 0; c < 5; ++c) {
        const bool poisoned_forward = c == 2;
        EXPECT_EQ(std::isnan(mean[c]), poisoned_forward) << kernel << " channel " << c;
        for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
          EXPECT_EQ(std::isfinite(y[at(g, c, j)]), !poisoned_forward) << kernel << " " << c;
          if (c != 2 && c != 4) {
            EXPECT_TRUE(std::isfinite(dx[at(g, c, j)])) << kernel << " " << c;
          }
        }
        if (c != 2 && c != 4) {
          EXPECT_TRUE(std::isfinite(dgamma[c]) && std::isfinite(dbeta[c]));
        }
      }
    }
  }
}

}  // namespace
}  // namespace bnorm
