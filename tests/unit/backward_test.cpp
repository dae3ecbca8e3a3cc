// backward against central finite differences in double, and its invariants.
//
// The loss is L = dot(dy, y(x, gamma, beta)) with y from forward_training (batch statistics), so
// dL/dx, dL/dgamma, dL/dbeta are exactly what backward returns for upstream gradient dy.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "bnorm/functional.hpp"
#include "bnorm/kernels.hpp"
#include "support/support.hpp"

namespace bnorm {
namespace {

using test::at;

double loss(const std::vector<double>& x, const std::vector<double>& dy, const Geometry& g,
            const std::vector<double>& gamma, const std::vector<double>& beta, double epsilon) {
  std::vector<double> y(x.size()), mean(g.channels), variance(g.channels);
  forward_training(x, y, g, gamma, beta, epsilon, mean, variance);
  double l = 0;
  for (std::size_t i = 0; i < y.size(); ++i) l += dy[i] * y[i];
  return l;
}

// Central difference of `loss` with respect to v[i].
template <class F>
double central_difference(std::vector<double>& v, std::size_t i, F&& f) {
  constexpr double h = 1e-6;
  const double saved = v[i];
  v[i] = saved + h;
  const double plus = f();
  v[i] = saved - h;
  const double minus = f();
  v[i] = saved;
  return (plus - minus) / (2 * h);
}

void expect_gradient(double analytic, double numeric, const std::string& what) {
  EXPECT_LE(std::fabs(analytic - numeric), 1e-5 + 1e-3 * std::fabs(numeric))
      << what << ": analytic " << analytic << " vs finite difference " << numeric;
}

// Random small geometries (count = 2 included), affine on and off.
TEST(Backward, MatchesFiniteDifferencesOnRandomGeometries) {
  std::mt19937_64 rng(2024);
  std::uniform_int_distribution<int> extent(1, 4);
  int cases = 0;
  for (const auto& kernel : kernel_names()) {
    const ScopedKernel scoped(kernel);
    for (int trial = 0; trial < 24; ++trial) {
      Geometry g{extent(rng), extent(rng), trial % 3 == 0 ? 1 : extent(rng)};
      if (trial == 0) g = Geometry{2, 3, 1};  // count = 2
      if (trial == 1) g = Geometry{1, 2, 2};  // count = 2, channels first
      if (g.count_per_channel() < 2) g.outer += 1;
      if (!test::kernel_applies(kernel, g)) continue;
      const bool affine = trial % 2 == 0;
      const double epsilon = trial % 4 == 0 ? 1e-3 : 1e-5;
      auto x = test::gaussian<double>(g, 100 + trial, 0.3, 0.7);
      const auto dy = test::uniform<double>(g.size(), 200 + trial);
      auto gamma =
          affine ? test::uniform<double>(g.channels, 300 + trial, 0.5, 2.0) : std::vector<double>{};
      auto beta = affine ? test::uniform<double>(g.channels, 400 + trial) : std::vector<double>{};

      std::vector<double> y(x.size()), mean(g.channels), variance(g.channels);
      forward_training(x, y, g, gamma, beta, epsilon, mean, variance);
      std::vector<double> dx(x.size()), dgamma(g.channels), dbeta(g.channels);
      backward(x, dy, g, gamma, mean, variance, epsilon, dx, dgamma, dbeta);

      const auto f = [&] { return loss(x, dy, g, gamma, beta, epsilon); };
      const std::string what = kernel + " trial " + std::to_string(trial);
      for (std::size_t i = 0; i < x.size(); ++i) {
        expect_gradient(dx[i], central_difference(x, i, f),
                        what + " dx[" + std::to_string(i) + "]");
      }
      for (std::int64_t c = 0; c < g.channels; ++c) {
        if (affine) {
          expect_gradient(dgamma[c], central_difference(gamma, c, f), what + " dgamma");
          expect_gradient(dbeta[c], central_difference(beta, c, f), what + " dbeta");
        } else {
          // Without affine parameters the gradients are those of gamma = 1, beta = 0.
          std::vector<double> ones(g.channels, 1.0), zeros(g.channels, 0.0);
          const auto f1 = [&] { return loss(x, dy, g, ones, zeros, epsilon); };
          expect_gradient(dgamma[c], central_difference(ones, c, f1), what + " dgamma (no affine)");
          expect_gradient(dbeta[c], central_difference(zeros, c, f1), what + " dbeta (no affine)");
        }
      }
      ++cases;
    }
  }
  EXPECT_GE(cases, 20 * 2);
}

// For any dy: sum dx = 0 and sum dx * x_hat = 0 per channel. The second holds exactly for
// epsilon = 0 (with epsilon it is a * sum(dy x_hat) * eps / (var + eps)), so epsilon is 0 here.
TEST(Backward, InvariantsHoldForAnyUpstreamGradient) {
  for (const auto& kernel : kernel_names()) {
    const ScopedKernel scoped(kernel);
    for (const Geometry g : {Geometry{5, 3, 17}, Geometry{70, 6, 1}, Geometry{2, 4, 3}}) {
      if (!test::kernel_applies(kernel, g)) continue;
      const auto x = test::gaussian<double>(g, 11, 50.0, 1.0);
      const auto dy = test::uniform<double>(g.size(), 12, -3, 5);
      const auto gamma = test::uniform<double>(g.channels, 13, 0.5, 2.0);
      std::vector<double> y(x.size()), mean(g.channels), variance(g.channels);
      forward_training(x, y, g, gamma, {}, 0.0, mean, variance);
      std::vector<double> dx(x.size());
      backward(x, dy, g, gamma, mean, variance, 0.0, dx, {}, {});
      for (std::int64_t c = 0; c < g.channels; ++c) {
        const double invstd = 1 / std::sqrt(variance[c]);
        double sum_dx = 0, sum_dx_xhat = 0, scale = 0;
        for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
          const double d = dx[at(g, c, j)];
          const double xhat = (x[at(g, c, j)] - mean[c]) * invstd;
          sum_dx += d;
          sum_dx_xhat += d * xhat;
          scale += std::fabs(d) * (1 + std::fabs(xhat));
        }
        EXPECT_LE(std::fabs(sum_dx), 1e-12 * scale) << kernel << " channel " << c;
        EXPECT_LE(std::fabs(sum_dx_xhat), 1e-12 * scale) << kernel << " channel " << c;
      }
    }
  }
}

// Scale invariance (REFERENCES.md §1): BN(k x) = BN(x) for k > 0 as epsilon -> 0.
TEST(Backward, ForwardIsScaleInvariant) {
  const Geometry g{4, 3, 10};
  const auto x = test::gaussian<double>(g, 5);
  std::vector<double> scaled(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) scaled[i] = 8 * x[i];
  std::vector<double> y1(x.size()), y2(x.size()), m(3), v(3);
  forward_training(x, y1, g, {}, {}, 0.0, m, v);
  forward_training(scaled, y2, g, {}, {}, 0.0, m, v);
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y1[i], y2[i], 1e-14);
}

}  // namespace
}  // namespace bnorm
