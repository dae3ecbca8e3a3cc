// The reference kernels for 16-bit storage (src/kernels/reference/half.hpp) against a long double
// oracle on the values the 16-bit inputs represent: forward training, inference and backward,
// bf16 and fp16, channels-first and channels-last, means far from zero. The measured worst errors
// are printed (docs/numerics.md, "16-bit storage", quotes them) and bounded:
//   - batch_mean, batch_variance, dgamma, dbeta: the oracle's value rounded to float, within
//     2 float ulps (the double sums are exact to ~1e-13 relative; the float rounding dominates);
//   - y, dx: within 0.5 ulp of the 16-bit format plus one float ulp (2^-16 bf16 ulps, 2^-13
//     fp16 ulps): the double result is rounded to float and then to 16 bits, and the float
//     rounding can move a value just off a 16-bit tie onto it (0.5 ulp16 + 0.5 ulp32 at most,
//     plus the double evaluation's ~1e-16 relative). The count of outputs more than 0.5 ulp16
//     away (not correctly rounded) is printed.
#include "kernels/reference/half.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "bnorm/half.hpp"

namespace bnorm {
namespace {

namespace ref = kernels::reference::half;
using Real = long double;

struct Case {
  std::int64_t outer, channels, inner;
  double mean, stddev;
};

// NCHW and NHWC shapes, odd sizes, means large against the spread (the split of the mean
// matters) yet resolved by the 16-bit format's spacing.
std::vector<Case> cases_for(bool bf16_format) {
  const double far = bf16_format ? 1000.0 : 100.0;
  return {
      {4, 3, 81, 0.0, 1.0},        {7, 5, 33, 3.0, 0.5},        {64, 17, 1, -2.0, 4.0},
      {129, 33, 1, far, far / 20}, {3, 4, 1000, far, far / 20}, {2, 1, 4097, 0.0, 1e-3},
  };
}

template <class T16>
constexpr double kUlp = std::is_same_v<T16, bf16> ? 0x1p-7 : 0x1p-10;  // ulp of 1

// The 16-bit format's ulp at |v| (its spacing there; the subnormal spacing below the normal range).
template <class T16>
double ulp_at(double v) {
  const double min_normal = std::is_same_v<T16, bf16> ? 0x1p-126 : 0x1p-14;
  const double a = std::max(std::abs(v), min_normal);
  int e = 0;
  (void)std::frexp(a, &e);
  return std::ldexp(kUlp<T16>, e - 1);
}

template <class T16>
std::vector<T16> random_16(std::size_t n, double mean, double stddev, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, stddev);
  std::vector<T16> v(n);
  for (auto& e : v) e = T16(static_cast<float>(dist(rng)));
  return v;
}

std::vector<float> random_float(std::size_t n, double lo, double hi, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& e : v) e = static_cast<float>(dist(rng));
  return v;
}

template <class T16>
Real value(T16 v) {
  return static_cast<Real>(static_cast<float>(v));
}

std::int64_t at(const Case& k, std::int64_t o, std::int64_t c, std::int64_t i) {
  return (o * k.channels + c) * k.inner + i;
}

// Worst errors over all cases: statistics in float ulps (relative), outputs in 16-bit ulps.
struct Worst {
  double stats_float_ulps = 0;
  double output_ulps16 = 0;
  std::int64_t outputs = 0, not_correctly_rounded = 0;
  void stat(Real got, Real want) {
    const double e = static_cast<double>(std::abs(got - want) / std::max(std::abs(want), 1e-30L));
    stats_float_ulps = std::max(stats_float_ulps, e / 0x1p-24);
  }
  template <class T16>
  void output(T16 got, Real want) {
    const double e =
        static_cast<double>(std::abs(value(got) - want)) / ulp_at<T16>(static_cast<double>(want));
    output_ulps16 = std::max(output_ulps16, e);
    ++outputs;
    if (e > 0.5) ++not_correctly_rounded;
  }
  void print(const char* what) const {
    std::printf(
        "%s: statistics %.3g float ulps, outputs %.6f ulps (%lld of %lld not correctly "
        "rounded)\n",
        what, stats_float_ulps, output_ulps16, static_cast<long long>(not_correctly_rounded),
        static_cast<long long>(outputs));
  }
};

// Bounds: 2 float ulps for the statistics, 0.5 ulp16 + 1 float ulp for the 16-bit outputs.
template <class T16>
void expect_bounds(const Worst& w) {
  EXPECT_LE(w.stats_float_ulps, 2.0);
  EXPECT_LE(w.output_ulps16, 0.5 + (std::is_same_v<T16, bf16> ? 0x1p-16 : 0x1p-13));
  EXPECT_GT(w.outputs, 0);
}

template <class T16>
void forward_training_against_oracle() {
  Worst worst;
  unsigned seed = 1;
  for (const Case& k : cases_for(std::is_same_v<T16, bf16>)) {
    const Geometry g{k.outer, k.channels, k.inner};
    const auto n = static_cast<std::size_t>(g.size());
    const auto C = static_cast<std::size_t>(k.channels);
    const auto x = random_16<T16>(n, k.mean, k.stddev, ++seed);
    const auto gamma = random_float(C, 0.5, 2.0, ++seed);
    const auto beta = random_float(C, -1.0, 1.0, ++seed);
    const float eps = 1e-5f;
    std::vector<T16> y(n);
    std::vector<float> mean(C), variance(C);
    ref::forward_training(x.data(), y.data(), g, gamma.data(), beta.data(), eps, mean.data(),
                          variance.data());
    const Real M = static_cast<Real>(g.count_per_channel());
    for (std::int64_t c = 0; c < k.channels; ++c) {
      Real s = 0;
      for (std::int64_t o = 0; o < k.outer; ++o) {
        for (std::int64_t i = 0; i < k.inner; ++i) s += value(x[at(k, o, c, i)]);
      }
      const Real m = s / M;
      Real q = 0;
      for (std::int64_t o = 0; o < k.outer; ++o) {
        for (std::int64_t i = 0; i < k.inner; ++i) {
          const Real d = value(x[at(k, o, c, i)]) - m;
          q += d * d;
        }
      }
      const Real var = q / M;
      worst.stat(mean[c], m);
      worst.stat(variance[c], var);
      const Real a = static_cast<Real>(gamma[c]) / std::sqrt(var + static_cast<Real>(eps));
      for (std::int64_t o = 0; o < k.outer; ++o) {
        for (std::int64_t i = 0; i < k.inner; ++i) {
          const std::int64_t p = at(k, o, c, i);
          worst.output(y[p], (value(x[p]) - m) * a + static_cast<Real>(beta[c]));
        }
      }
    }
  }
  worst.print(std::is_same_v<T16, bf16> ? "bf16 forward training" : "fp16 forward training");
  expect_bounds<T16>(worst);
}

TEST(HalfReference, ForwardTrainingBf16) {
  forward_training_against_oracle<bf16>();
}
TEST(HalfReference, ForwardTrainingFp16) {
  forward_training_against_oracle<fp16>();
}

template <class T16>
void inference_against_oracle() {
  Worst worst;
  unsigned seed = 100;
  for (const Case& k : cases_for(std::is_same_v<T16, bf16>)) {
    const Geometry g{k.outer, k.channels, k.inner};
    const auto n = static_cast<std::size_t>(g.size());
    const auto C = static_cast<std::size_t>(k.channels);
    const auto x = random_16<T16>(n, k.mean, k.stddev, ++seed);
    const auto gamma = random_float(C, -2.0, 2.0, ++seed);
    const auto beta = random_float(C, -1.0, 1.0, ++seed);
    const auto mean = random_float(C, k.mean - k.stddev, k.mean + k.stddev, ++seed);
    const auto variance =
        random_float(C, 0.5 * k.stddev * k.stddev, 2 * k.stddev * k.stddev, ++seed);
    const float eps = 1e-3f;
    std::vector<T16> y(n);
    ref::forward_inference(x.data(), y.data(), g, gamma.data(), beta.data(), mean.data(),
                           variance.data(), eps);
    for (std::int64_t c = 0; c < k.channels; ++c) {
      const Real a = static_cast<Real>(gamma[c]) /
                     std::sqrt(static_cast<Real>(variance[c]) + static_cast<Real>(eps));
      for (std::int64_t o = 0; o < k.outer; ++o) {
        for (std::int64_t i = 0; i < k.inner; ++i) {
          const std::int64_t p = at(k, o, c, i);
          worst.output(y[p],
                       (value(x[p]) - static_cast<Real>(mean[c])) * a + static_cast<Real>(beta[c]));
        }
      }
    }
  }
  worst.print(std::is_same_v<T16, bf16> ? "bf16 inference" : "fp16 inference");
  expect_bounds<T16>(worst);
}

TEST(HalfReference, InferenceBf16) {
  inference_against_oracle<bf16>();
}
TEST(HalfReference, InferenceFp16) {
  inference_against_oracle<fp16>();
}

template <class T16>
void backward_against_oracle() {
  Worst worst;
  unsigned seed = 200;
  for (const Case& k : cases_for(std::is_same_v<T16, bf16>)) {
    const Geometry g{k.outer, k.channels, k.inner};
    const auto n = static_cast<std::size_t>(g.size());
    const auto C = static_cast<std::size_t>(k.channels);
    const auto x = random_16<T16>(n, k.mean, k.stddev, ++seed);
    const auto dy = random_16<T16>(n, 0.1, 1.0, ++seed);
    const auto gamma = random_float(C, 0.5, 2.0, ++seed);
    const auto beta = random_float(C, -1.0, 1.0, ++seed);
    const float eps = 1e-5f;
    // The saved statistics of a forward pass, as the layer keeps them.
    std::vector<T16> y(n);
    std::vector<float> mean(C), variance(C);
    ref::forward_training(x.data(), y.data(), g, gamma.data(), beta.data(), eps, mean.data(),
                          variance.data());
    std::vector<T16> dx(n);
    std::vector<float> dgamma(C), dbeta(C);
    ref::backward(x.data(), dy.data(), g, gamma.data(), mean.data(), variance.data(), eps,
                  dx.data(), dgamma.data(), dbeta.data());
    const Real M = static_cast<Real>(g.count_per_channel());
    for (std::int64_t c = 0; c < k.channels; ++c) {
      const Real m = static_cast<Real>(mean[c]);
      const Real invstd = 1 / std::sqrt(static_cast<Real>(variance[c]) + static_cast<Real>(eps));
      Real sum_dy = 0, sum_dy_xhat = 0;
      for (std::int64_t o = 0; o < k.outer; ++o) {
        for (std::int64_t i = 0; i < k.inner; ++i) {
          const std::int64_t p = at(k, o, c, i);
          sum_dy += value(dy[p]);
          sum_dy_xhat += value(dy[p]) * (value(x[p]) - m) * invstd;
        }
      }
      worst.stat(dbeta[c], sum_dy);
      worst.stat(dgamma[c], sum_dy_xhat);
      const Real a = static_cast<Real>(gamma[c]) * invstd;
      for (std::int64_t o = 0; o < k.outer; ++o) {
        for (std::int64_t i = 0; i < k.inner; ++i) {
          const std::int64_t p = at(k, o, c, i);
          const Real xhat = (value(x[p]) - m) * invstd;
          worst.output(dx[p], a * (value(dy[p]) - sum_dy / M - xhat * sum_dy_xhat / M));
        }
      }
    }
  }
  worst.print(std::is_same_v<T16, bf16> ? "bf16 backward" : "fp16 backward");
  expect_bounds<T16>(worst);
}

TEST(HalfReference, BackwardBf16) {
  backward_against_oracle<bf16>();
}
TEST(HalfReference, BackwardFp16) {
  backward_against_oracle<fp16>();
}

// The phases with a residual and a relu (BN + Add + ReLU), and in place (y aliasing x).
TEST(HalfReference, NormalizeWithResidualAndReluInPlace) {
  const Geometry g{5, 3, 7};
  const auto n = static_cast<std::size_t>(g.size());
  auto x = random_16<bf16>(n, 0.5, 2.0, 300);
  const auto z = random_16<bf16>(n, 0.0, 1.0, 301);
  const std::vector<double> mean{0.25, 0.5, -1.0}, scale{1.5, -0.75, 2.0}, shift{0.1, 0.0, -0.2};
  const auto original = x;
  ref::normalize(x.data(), z.data(), x.data(), g, mean.data(), scale.data(), shift.data(), true);
  int positive = 0;
  for (std::int64_t o = 0; o < g.outer; ++o) {
    for (std::int64_t c = 0; c < g.channels; ++c) {
      for (std::int64_t i = 0; i < g.inner; ++i) {
        const auto p = static_cast<std::size_t>((o * g.channels + c) * g.inner + i);
        const double v =
            (static_cast<double>(static_cast<float>(original[p])) - mean[c]) * scale[c] + shift[c] +
            static_cast<double>(static_cast<float>(z[p]));
        const bf16 want(static_cast<float>(std::max(v, 0.0)));
        EXPECT_EQ(x[p].bits, want.bits);
        positive += v > 0;
      }
    }
  }
  // Both sides of the relu are exercised.
  EXPECT_GT(positive, static_cast<int>(n) / 4);
  EXPECT_LT(positive, 3 * static_cast<int>(n) / 4);
}

// A constant dy gives dx == 0 exactly, and a constant channel (variance 0, eps 0) gives y = beta.
TEST(HalfReference, DegenerateChannels) {
  const Geometry g{4, 2, 9};
  const auto n = static_cast<std::size_t>(g.size());
  const auto x = random_16<fp16>(n, 1.0, 1.0, 400);
  const std::vector<fp16> dy(n, fp16(0.75f));
  const std::vector<float> gamma{1.5f, -0.5f};
  std::vector<float> mean(2), variance(2);
  std::vector<fp16> y(n), dx(n);
  ref::forward_training(x.data(), y.data(), g, gamma.data(), nullptr, 1e-5f, mean.data(),
                        variance.data());
  std::vector<float> dgamma(2), dbeta(2);
  ref::backward(x.data(), dy.data(), g, gamma.data(), mean.data(), variance.data(), 1e-5f,
                dx.data(), dgamma.data(), dbeta.data());
  for (const fp16 d : dx) EXPECT_LE(std::abs(static_cast<float>(d)), 1e-6f);
  EXPECT_EQ(dbeta[0], 0.75f * static_cast<float>(g.count_per_channel()));

  const std::vector<fp16> constant(n, fp16(3.0f));
  const std::vector<float> beta{0.25f, -4.0f};
  ref::forward_training(constant.data(), y.data(), g, gamma.data(), beta.data(), 0.0f, mean.data(),
                        variance.data());
  EXPECT_EQ(variance[0], 0.0f);
  for (std::int64_t o = 0; o < g.outer; ++o) {
    for (std::int64_t i = 0; i < g.inner; ++i) {
      EXPECT_EQ(static_cast<float>(y[static_cast<std::size_t>(o * 18 + i)]), 0.25f);
      EXPECT_EQ(static_cast<float>(y[static_cast<std::size_t>(o * 18 + 9 + i)]), -4.0f);
    }
  }
}

}  // namespace
}  // namespace bnorm
