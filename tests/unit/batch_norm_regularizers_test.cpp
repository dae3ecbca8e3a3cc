// Regularizers (loss and gradient terms) and constraints (projections after an update), against
// the Keras formulas in double.
#include <gtest/gtest.h>

#include <bnorm/batch_norm.hpp>
#include <cmath>

#include "layer_reference.hpp"

namespace bnorm {
namespace {

using testing::random_values;

TEST(BatchNormRegularizers, LossIsL1PlusL2OfGammaAndBeta) {
  BatchNormOptions o;
  o.gamma_regularizer = Regularizer::l1_l2(0.1, 0.01);
  o.beta_regularizer = Regularizer::l2_only();  // Keras default 0.01
  BatchNormDouble bn(3, o);
  const double gamma[] = {1.5, -0.5, 2.0}, beta[] = {0.25, -1.0, 0.0};
  for (int c = 0; c < 3; ++c) {
    bn.gamma()[c] = gamma[c];
    bn.beta()[c] = beta[c];
  }
  const double expected =
      0.1 * (1.5 + 0.5 + 2.0) + 0.01 * (2.25 + 0.25 + 4.0) + 0.01 * (0.0625 + 1.0 + 0.0);
  EXPECT_NEAR(bn.regularization_loss(), expected, 1e-15);
  EXPECT_EQ(BatchNormDouble(3).regularization_loss(), 0.0);
}

TEST(BatchNormRegularizers, GradientTermsAreAddedToTheDataGradient) {
  BatchNormOptions plain = BatchNormOptions::pytorch();
  BatchNormOptions reg = plain;
  reg.gamma_regularizer = Regularizer::l1_l2(0.1, 0.05);
  reg.beta_regularizer = Regularizer::l1_only(0.2);
  BatchNormDouble a(2, plain), b(2, reg);
  const double gamma[] = {1.5, -0.5}, beta[] = {0.0, -1.0};
  for (int c = 0; c < 2; ++c) {
    a.gamma()[c] = b.gamma()[c] = gamma[c];
    a.beta()[c] = b.beta()[c] = beta[c];
  }
  const std::vector<std::int64_t> shape = {4, 2, 3};
  const auto x = random_values<double>(24, 1);
  const auto dy = random_values<double>(24, 2);
  std::vector<double> y(24), dx(24);
  a.forward(x, shape, y, true);
  a.backward(x, dy, dx);
  b.forward(x, shape, y, true);
  b.backward(x, dy, dx);
  for (std::size_t c = 0; c < 2; ++c) {
    const double sign_g = gamma[c] > 0 ? 1 : -1;
    const double sign_b = beta[c] > 0 ? 1 : (beta[c] < 0 ? -1 : 0);  // sign(0) = 0
    EXPECT_NEAR(b.gamma_grad()[c], a.gamma_grad()[c] + 0.1 * sign_g + 2 * 0.05 * gamma[c], 1e-14);
    EXPECT_NEAR(b.beta_grad()[c], a.beta_grad()[c] + 0.2 * sign_b, 1e-14);
  }
}

TEST(BatchNormConstraints, ProjectionsAreTheKerasFormulas) {
  const std::vector<double> w0 = {3.0, -4.0, 0.5, 1.5};
  const double norm = std::sqrt(9 + 16 + 0.25 + 2.25);
  const double eps = Constraint::kEpsilon;
  const auto projected = [&](const Constraint& k) {
    auto w = w0;
    k.apply(std::span<double>(w));
    return w;
  };
  const auto max2 = projected(Constraint::max_norm(2));
  const auto unit = projected(Constraint::unit_norm());
  const auto minmax = projected(Constraint::min_max_norm(1, 3, 0.5));
  const auto nonneg = projected(Constraint::non_neg());
  const auto big = projected(Constraint::max_norm(100));  // inside the ball: ~unchanged
  for (std::size_t i = 0; i < w0.size(); ++i) {
    EXPECT_NEAR(max2[i], w0[i] * 2 / (eps + norm), 1e-15);
    EXPECT_NEAR(unit[i], w0[i] / (eps + norm), 1e-15);
    EXPECT_NEAR(minmax[i], w0[i] * (0.5 * 3 + 0.5 * norm) / (eps + norm), 1e-15);
    EXPECT_EQ(nonneg[i], w0[i] >= 0 ? w0[i] : 0.0);
    EXPECT_NEAR(big[i], w0[i] * norm / (eps + norm), 1e-15);
  }
}

TEST(BatchNormConstraints, ApplyConstraintsProjectsGammaAndBeta) {
  BatchNormOptions o;
  o.gamma_constraint = Constraint::non_neg();
  o.beta_constraint = Constraint::unit_norm();
  BatchNorm bn(2, o);
  bn.gamma()[0] = -1.0f;
  bn.gamma()[1] = 2.0f;
  bn.beta()[0] = 3.0f;
  bn.beta()[1] = 4.0f;
  bn.apply_constraints();
  EXPECT_EQ(bn.gamma()[0], 0.0f);
  EXPECT_EQ(bn.gamma()[1], 2.0f);
  EXPECT_FLOAT_EQ(bn.beta()[0], 0.6f);
  EXPECT_FLOAT_EQ(bn.beta()[1], 0.8f);
}

}  // namespace
}  // namespace bnorm
