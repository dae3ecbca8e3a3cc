// Batch renormalization (REFERENCES.md section 3): r = 1, d = 0 is plain batch norm bitwise;
// the corrections and every renorm state variable follow the tf.keras formulas over several
// steps; gradients with r and d held constant agree with central finite differences; the
// clipping schedule is the paper's.
#include <gtest/gtest.h>

#include <algorithm>
#include <bnorm/batch_norm.hpp>
#include <cmath>

#include "layer_reference.hpp"

namespace bnorm {
namespace {

using testing::batch_stats;
using testing::random_values;
using testing::view_of;

TEST(BatchNormRenorm, R1D0IsPlainBatchNormBitwise) {
  BatchNormOptions plain;
  plain.axis = 1;
  plain.momentum = 0.9;
  BatchNormOptions renorm = plain;
  renorm.renorm = true;
  renorm.renorm_clipping = renorm_clipping_schedule(0);  // rmax = rmin = 1, dmax = 0
  ASSERT_EQ(renorm.renorm_clipping.rmax, 1.0);
  ASSERT_EQ(renorm.renorm_clipping.dmax, 0.0);
  BatchNorm a(3, plain), b(3, renorm);
  for (int c = 0; c < 3; ++c) {
    a.gamma()[c] = b.gamma()[c] = 0.75f + 0.5f * static_cast<float>(c);
    a.beta()[c] = b.beta()[c] = -0.5f + static_cast<float>(c);
  }
  const std::vector<std::int64_t> shape = {4, 3, 7};
  for (int step = 0; step < 4; ++step) {
    const auto x = random_values<float>(84, 100 + step, 3.0, 2.0 * step - 1);
    const auto dy = random_values<float>(84, 200 + step);
    std::vector<float> ya(84), yb(84), dxa(84), dxb(84);
    a.forward(x, shape, ya, true);
    b.forward(x, shape, yb, true);
    for (int c = 0; c < 3; ++c) {
      ASSERT_EQ(b.renorm_r()[c], 1.0);
      ASSERT_EQ(b.renorm_d()[c], 0.0);
    }
    a.backward(x, dy, dxa);
    b.backward(x, dy, dxb);
    ASSERT_EQ(ya, yb) << "step " << step;
    ASSERT_EQ(dxa, dxb) << "step " << step;
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(a.gamma_grad()[c], b.gamma_grad()[c]);
      EXPECT_EQ(a.beta_grad()[c], b.beta_grad()[c]);
      EXPECT_EQ(a.moving_mean()[c], b.moving_mean()[c]);
    }
  }
}

TEST(BatchNormRenorm, CorrectionsAndStateFollowTheKerasFormulas) {
  BatchNormOptions o;
  o.momentum = 0.9;
  o.renorm = true;
  o.renorm_momentum = 0.8;
  o.renorm_clipping = {1.5, 0.7, 0.5};
  o.moving_variance_initializer = Initializer::constant(4.0);
  o.moving_mean_initializer = Initializer::constant(0.5);
  BatchNormDouble bn(2, o);
  bn.gamma()[0] = 1.5;
  bn.gamma()[1] = -2.0;
  bn.beta()[0] = 0.25;
  bn.beta()[1] = 3.0;
  // tf.keras initial state: renorm_mean = moving_mean, renorm_stddev = moving_stddev = sqrt(var).
  std::vector<double> renorm_mean(2, 0.5), renorm_stddev(2, 2.0), moving_stddev(2, 2.0),
      moving_mean(2, 0.5), moving_var(2, 4.0);
  for (int c = 0; c < 2; ++c) {
    EXPECT_EQ(bn.renorm_mean()[c], 0.5);
    EXPECT_EQ(bn.renorm_stddev()[c], 2.0);
    EXPECT_EQ(bn.moving_stddev()[c], 2.0);
  }
  const std::vector<std::int64_t> shape = {6, 2};
  const auto v = view_of(shape, -1);
  const double eps = o.epsilon;
  bool clipped_r = false, clipped_d = false;
  for (int step = 1; step <= 6; ++step) {
    const auto x = random_values<double>(12, 300 + step, 0.5 + 0.4 * step, 0.3 * step);
    std::vector<double> y(12);
    bn.forward(x, shape, y, true);
    const auto s = batch_stats(x, v);
    for (std::size_t c = 0; c < 2; ++c) {
      const double sigma = std::sqrt(s.var[c] + eps);
      const double div = std::max(renorm_stddev[c], std::sqrt(eps));
      const double r_raw = sigma / div, d_raw = (s.mean[c] - renorm_mean[c]) / div;
      const double r = std::clamp(r_raw, 0.7, 1.5), d = std::clamp(d_raw, -0.5, 0.5);
      clipped_r = clipped_r || r != r_raw;
      clipped_d = clipped_d || d != d_raw;
      EXPECT_NEAR(bn.renorm_r()[c], r, 1e-14);
      EXPECT_NEAR(bn.renorm_d()[c], d, 1e-14);
      const double gamma = c == 0 ? 1.5 : -2.0, beta = c == 0 ? 0.25 : 3.0;
      for (std::size_t n = 0; n < 6; ++n) {
        const double xhat = (x[n * 2 + c] - s.mean[c]) / sigma;
        EXPECT_NEAR(y[n * 2 + c], gamma * (xhat * r + d) + beta, 1e-12);
      }
      // State after the step (pre-update values fed r and d above).
      renorm_mean[c] = 0.8 * renorm_mean[c] + 0.2 * s.mean[c];
      renorm_stddev[c] = 0.8 * renorm_stddev[c] + 0.2 * sigma;
      moving_mean[c] = 0.9 * moving_mean[c] + 0.1 * s.mean[c];
      moving_stddev[c] = 0.9 * moving_stddev[c] + 0.1 * sigma;
      moving_var[c] = std::max(moving_stddev[c] * moving_stddev[c] - eps, 0.0);
      EXPECT_NEAR(bn.renorm_mean()[c], renorm_mean[c], 1e-13);
      EXPECT_NEAR(bn.renorm_stddev()[c], renorm_stddev[c], 1e-13);
      EXPECT_NEAR(bn.moving_mean()[c], moving_mean[c], 1e-13);
      EXPECT_NEAR(bn.moving_stddev()[c], moving_stddev[c], 1e-13);
      EXPECT_NEAR(bn.moving_variance()[c], moving_var[c], 1e-12);
    }
  }
  EXPECT_TRUE(clipped_r) << "the data should exercise the r clipping";
  EXPECT_TRUE(clipped_d) << "the data should exercise the d clipping";
  // Inference: r = 1, d = 0 and the moving statistics.
  const auto x = random_values<double>(12, 400);
  std::vector<double> y(12);
  bn.forward(x, shape, y, false);
  for (std::size_t i = 0; i < 12; ++i) {
    const std::size_t c = i % 2;
    const double gamma = c == 0 ? 1.5 : -2.0, beta = c == 0 ? 0.25 : 3.0;
    EXPECT_NEAR(y[i], gamma * (x[i] - moving_mean[c]) / std::sqrt(moving_var[c] + eps) + beta,
                1e-12);
  }
}

// f(x, gamma) = sum w * (gamma * (x_hat(x) * r + d) + beta) with r, d the constants of the step
// (tf.keras stop_gradient): its derivatives by central differences are the layer's dx, dgamma.
TEST(BatchNormRenorm, GradientsWithConstantCorrectionsMatchFiniteDifferences) {
  BatchNormOptions o;
  o.axis = 1;
  o.renorm = true;
  o.renorm_clipping = {3.0, 1.0 / 3.0, 5.0};
  BatchNormDouble bn(2, o);
  bn.renorm_mean()[0] = 0.3;
  bn.renorm_mean()[1] = -1.1;
  bn.renorm_stddev()[0] = 1.7;
  bn.renorm_stddev()[1] = 0.6;
  bn.gamma()[0] = 1.25;
  bn.gamma()[1] = -0.5;
  const std::vector<std::int64_t> shape = {3, 2, 4};
  const auto v = view_of(shape, 1);
  const auto x = random_values<double>(24, 500, 1.5, 0.5);
  const auto w = random_values<double>(24, 501);
  std::vector<double> y(24), dx(24);
  bn.forward(x, shape, y, true);
  bn.backward(x, w, dx);
  const double r[] = {bn.renorm_r()[0], bn.renorm_r()[1]};
  const double d[] = {bn.renorm_d()[0], bn.renorm_d()[1]};
  for (int c = 0; c < 2; ++c) {
    ASSERT_NE(r[c], 1.0);
    ASSERT_NE(d[c], 0.0);
  }
  const auto f = [&](const std::vector<double>& xs, const double* gamma) {
    const auto s = batch_stats(xs, v);
    double sum = 0;
    for (std::int64_t n = 0; n < 3; ++n)
      for (std::int64_t c = 0; c < 2; ++c)
        for (std::int64_t i = 0; i < 4; ++i) {
          const auto k = static_cast<std::size_t>(c);
          const auto at = v.at(n, c, i);
          const double xhat = (xs[at] - s.mean[k]) / std::sqrt(s.var[k] + o.epsilon);
          sum += w[at] * (gamma[k] * (xhat * r[k] + d[k]) + bn.beta()[k]);
        }
    return sum;
  };
  const double gamma[] = {bn.gamma()[0], bn.gamma()[1]};
  const double h = 1e-5;
  for (std::size_t i = 0; i < 24; ++i) {
    auto xp = x, xm = x;
    xp[i] += h;
    xm[i] -= h;
    const double fd = (f(xp, gamma) - f(xm, gamma)) / (2 * h);
    EXPECT_NEAR(dx[i], fd, 1e-7 * (1 + std::abs(fd))) << i;
  }
  for (std::size_t c = 0; c < 2; ++c) {
    double gp[] = {gamma[0], gamma[1]}, gm[] = {gamma[0], gamma[1]};
    gp[c] += h;
    gm[c] -= h;
    const double fd = (f(x, gp) - f(x, gm)) / (2 * h);
    EXPECT_NEAR(bn.gamma_grad()[c], fd, 1e-7 * (1 + std::abs(fd)));
    double sw = 0;
    for (std::int64_t n = 0; n < 3; ++n)
      for (std::int64_t i = 0; i < 4; ++i) sw += w[v.at(n, static_cast<std::int64_t>(c), i)];
    EXPECT_NEAR(bn.beta_grad()[c], sw, 1e-12);
  }
}

TEST(BatchNormRenorm, ClippingScheduleIsThePapers) {
  const auto at = [](std::int64_t step) { return renorm_clipping_schedule(step); };
  for (const std::int64_t s : {-3L, 0L, 2500L, 5000L}) {
    EXPECT_EQ(at(s).rmax, 1.0) << s;
    EXPECT_EQ(at(s).rmin, 1.0) << s;
    EXPECT_EQ(at(s).dmax, 0.0) << s;
  }
  EXPECT_DOUBLE_EQ(at(22500).rmax, 2.0);  // halfway from 5k to 40k
  EXPECT_DOUBLE_EQ(at(22500).rmin, 0.5);
  EXPECT_DOUBLE_EQ(at(15000).dmax, 2.5);  // halfway from 5k to 25k
  EXPECT_DOUBLE_EQ(at(25000).dmax, 5.0);
  EXPECT_DOUBLE_EQ(at(40000).rmax, 3.0);
  EXPECT_DOUBLE_EQ(at(1000000).rmax, 3.0);
  EXPECT_DOUBLE_EQ(at(1000000).dmax, 5.0);
  EXPECT_DOUBLE_EQ(at(1000000).rmin, 1.0 / 3.0);
  double previous = 1;
  for (std::int64_t s = 0; s <= 50000; s += 1000) {
    EXPECT_GE(at(s).rmax, previous);
    previous = at(s).rmax;
  }
}

}  // namespace
}  // namespace bnorm
