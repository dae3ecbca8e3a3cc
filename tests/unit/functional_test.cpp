// The functional API and its phases against formulas evaluated in double, and against each other.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "bnorm/comm.hpp"
#include "bnorm/functional.hpp"
#include "bnorm/kernels.hpp"
#include "bnorm/phases.hpp"
#include "support/support.hpp"

namespace bnorm {
namespace {

using test::at;
using test::bitwise_equal;

TEST(ForwardInference, MatchesTheFormulaInDoubleAndAssignsItsOutput) {
  for (const auto& kernel : kernel_names()) {
    const ScopedKernel scoped(kernel);
    for (const Geometry g : {Geometry{3, 4, 11}, Geometry{40, 4, 1}}) {
      if (!test::kernel_applies(kernel, g)) continue;
      const auto x = test::gaussian<float>(g, 1, 20.0, 5.0);
      const auto gamma = test::uniform<float>(4, 2, 0.5, 2);
      const auto beta = test::uniform<float>(4, 3);
      const auto mean = test::uniform<float>(4, 4, 15, 25);
      const auto variance = test::uniform<float>(4, 5, 0.5, 4);
      std::vector<float> y(x.size(), 1e30f);  // junk: must be overwritten
      forward_inference(x, y, g, gamma, beta, mean, variance, 1e-3f);
      for (std::int64_t c = 0; c < 4; ++c) {
        const double a = gamma[c] / std::sqrt(static_cast<double>(variance[c]) + 1e-3f);
        for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
          const double expected = (x[at(g, c, j)] - static_cast<double>(mean[c])) * a + beta[c];
          EXPECT_NEAR(y[at(g, c, j)], expected,
                      4 * test::ulp(static_cast<float>(std::max(std::fabs(expected), 1.0))))
              << kernel;
        }
      }
      // In place gives the same bits.
      std::vector<float> in_place = x;
      forward_inference(in_place, in_place, g, gamma, beta, mean, variance, 1e-3f);
      EXPECT_TRUE(bitwise_equal(in_place, y)) << kernel;
    }
  }
}

TEST(ForwardTraining, EmptyGammaAndBetaMeanOneAndZero) {
  const Geometry g{5, 3, 4};
  const auto x = test::gaussian<float>(g, 7);
  std::vector<float> y1(x.size()), y2(x.size()), m(3), v(3);
  forward_training(x, y1, g, {}, {}, 1e-5f, m, v);
  const std::vector<float> ones(3, 1.0f), zeros(3, 0.0f);
  forward_training(x, y2, g, ones, zeros, 1e-5f, m, v);
  EXPECT_TRUE(bitwise_equal(y1, y2));
}

// forward_training = channel_moments -> normalize; backward = backward_sums -> backward_input.
TEST(Phases, ComposeToTheFunctionalApiBitwise) {
  for (const Geometry g : {Geometry{3, 5, 9}, Geometry{50, 5, 1}}) {
    const auto x = test::gaussian<float>(g, 8);
    const auto dy = test::uniform<float>(g.size(), 9);
    const auto gamma = test::uniform<float>(5, 10, 0.5, 2);
    const auto beta = test::uniform<float>(5, 11);
    std::vector<float> y(x.size()), mean(5), variance(5), dx(x.size()), dgamma(5), dbeta(5);
    forward_training(x, y, g, gamma, beta, 1e-3f, mean, variance);
    backward(x, dy, g, gamma, mean, variance, 1e-3f, dx, dgamma, dbeta);

    std::vector<Moments> moments(5);
    channel_moments(std::span<const float>(x), g, moments);
    std::vector<double> m(5), v(5);
    for (int c = 0; c < 5; ++c) {
      m[c] = moments[c].mean;
      v[c] = moments[c].m2 / moments[c].count;
      EXPECT_EQ(static_cast<float>(m[c]), mean[c]);
      EXPECT_EQ(static_cast<float>(v[c]), variance[c]);
    }
    std::vector<float> y2(x.size());
    normalize(std::span<const float>(x), std::span<float>(y2), g, gamma, beta, m, v, 1e-3f);
    EXPECT_TRUE(bitwise_equal(y, y2));

    std::vector<double> sum_dy(5), sum_dy_xhat(5);
    backward_sums(std::span<const float>(x), std::span<const float>(dy), g, mean, variance, 1e-3f,
                  sum_dy, sum_dy_xhat);
    std::vector<float> dx2(x.size());
    backward_input(std::span<const float>(x), std::span<const float>(dy), g, gamma, mean, variance,
                   1e-3f, sum_dy, sum_dy_xhat, static_cast<double>(g.count_per_channel()), dx2);
    EXPECT_TRUE(bitwise_equal(dx, dx2));
    for (int c = 0; c < 5; ++c) {
      EXPECT_EQ(static_cast<float>(sum_dy[c]), dbeta[c]);
      EXPECT_EQ(static_cast<float>(sum_dy_xhat[c]), dgamma[c]);
    }
  }
}

TEST(Phases, ChanMergeOfTwoHalvesEqualsTheWhole) {
  const Moments a{4, 2.5, 5.0};  // {1, 2, 3, 4}
  const Moments b{2, 5.5, 0.5};  // {5, 6}
  const Moments m = merge(a, b);
  EXPECT_EQ(m.count, 6);
  EXPECT_DOUBLE_EQ(m.mean, 3.5);
  EXPECT_DOUBLE_EQ(m.m2, 17.5);
  EXPECT_EQ(merge(Moments{}, b).mean, b.mean);
  EXPECT_EQ(merge(a, Moments{}).m2, a.m2);
  std::vector<Moments> per_rank = {a, Moments{}, b};
  std::vector<Moments> merged(1);
  merge_ranks(per_rank, 3, merged);
  EXPECT_DOUBLE_EQ(merged[0].m2, 17.5);
}

// The synchronized overloads with the one-process communicator are the plain ones, bitwise.
TEST(Synchronized, LocalCommunicatorEqualsUnsynchronized) {
  const LocalCommunicator local;
  for (const Geometry g : {Geometry{3, 5, 9}, Geometry{50, 5, 1}}) {
    const auto x = test::gaussian<double>(g, 12);
    const auto dy = test::uniform<double>(g.size(), 13);
    std::vector<double> y1(x.size()), y2(x.size()), m1(5), v1(5), m2(5), v2(5);
    forward_training(x, y1, g, {}, {}, 1e-5, m1, v1);
    forward_training(x, y2, g, {}, {}, 1e-5, m2, v2, local);
    EXPECT_TRUE(bitwise_equal(y1, y2) && bitwise_equal(m1, m2) && bitwise_equal(v1, v2));
    std::vector<double> dx1(x.size()), dx2(x.size()), dg1(5), dg2(5), db1(5), db2(5);
    backward(x, dy, g, {}, m1, v1, 1e-5, dx1, dg1, db1);
    backward(x, dy, g, {}, m1, v1, 1e-5, dx2, dg2, db2, local);
    EXPECT_TRUE(bitwise_equal(dx1, dx2) && bitwise_equal(dg1, dg2) && bitwise_equal(db1, db2));
  }
}

}  // namespace
}  // namespace bnorm
