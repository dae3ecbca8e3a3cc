// BatchNorm options and conventions against their formulas in double (REFERENCES.md section 2),
// the train/eval contract, and one negative test per invalid option.
#include <gtest/gtest.h>

#include <bnorm/batch_norm.hpp>
#include <bnorm/error.hpp>
#include <cmath>
#include <limits>
#include <string>

#include "layer_reference.hpp"

namespace bnorm {
namespace {

using testing::batch_stats;
using testing::random_values;
using testing::view_of;

constexpr double kTight = 1e-12;

// Runs `steps` training steps on fresh random batches and checks y and the moving statistics
// against the formulas after every step. `keras`: which momentum direction; `unbiased`: which
// variance is averaged; `momentum` nullopt: cumulative average.
void check_moving_statistics(BatchNormOptions o, const std::vector<std::int64_t>& shape,
                             int steps) {
  BatchNormDouble bn(view_of(shape, o.axis).channels, o);
  const auto v = view_of(shape, o.axis);
  const auto C = static_cast<std::size_t>(v.channels);
  std::vector<double> mm(bn.moving_mean().begin(), bn.moving_mean().end());
  std::vector<double> mv(bn.moving_variance().begin(), bn.moving_variance().end());
  for (int step = 1; step <= steps; ++step) {
    const auto x = random_values<double>(static_cast<std::size_t>(v.size()),
                                         static_cast<std::uint32_t>(step), 2.0, 3.0 * step);
    std::vector<double> y(x.size());
    const auto r = bn.forward(x, shape, y, true);
    EXPECT_TRUE(r.updated_statistics);
    const auto s = batch_stats(x, v);
    const auto expected_y = testing::affine_normalize(
        x, v, s.mean, s.var, o.epsilon, std::vector<double>(C, 1.0), std::vector<double>(C, 0.0));
    for (std::size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], expected_y[i], kTight) << i;
    for (std::size_t c = 0; c < C; ++c) {
      const double var = o.moving_variance == MovingVariance::kUnbiased
                             ? s.var[c] * s.count / (s.count - 1)
                             : s.var[c];
      double w = 0;  // weight of the batch
      if (!o.momentum) {
        w = 1.0 / step;
      } else if (o.momentum_convention == MomentumConvention::kKeras) {
        w = 1 - *o.momentum;
      } else {
        w = *o.momentum;
      }
      mm[c] = (1 - w) * mm[c] + w * s.mean[c];
      mv[c] = (1 - w) * mv[c] + w * var;
      EXPECT_NEAR(bn.moving_mean()[c], mm[c], kTight * (1 + std::abs(mm[c])));
      EXPECT_NEAR(bn.moving_variance()[c], mv[c], kTight * (1 + std::abs(mv[c])));
      EXPECT_NEAR(bn.batch_mean()[c], s.mean[c], kTight * (1 + std::abs(s.mean[c])));
      EXPECT_NEAR(bn.batch_variance()[c], s.var[c], kTight * (1 + s.var[c]));
    }
    EXPECT_EQ(bn.num_batches_tracked(), step);
  }
}

TEST(BatchNormConventions, KerasMomentumAndBiasedVarianceOverSteps) {
  BatchNormOptions o;  // Keras defaults, but a momentum that moves visibly
  o.momentum = 0.9;
  check_moving_statistics(o, {6, 3}, 5);
  check_moving_statistics(o, {2, 3, 3, 4}, 5);  // NHWC
}

TEST(BatchNormConventions, PyTorchMomentumAndUnbiasedVarianceOverSteps) {
  check_moving_statistics(BatchNormOptions::pytorch(), {4, 3, 2, 5}, 5);  // NCHW
  check_moving_statistics(BatchNormOptions::pytorch(), {7, 2}, 5);        // (N, C)
}

TEST(BatchNormConventions, CumulativeAverageIsTheMeanOfAllBatches) {
  check_moving_statistics(BatchNormOptions::pytorch(std::nullopt), {5, 2, 3}, 6);
  BatchNormOptions keras;
  keras.momentum = std::nullopt;
  check_moving_statistics(keras, {5, 4}, 4);
}

TEST(BatchNormConventions, AnyMixIsExpressible) {
  auto torch_biased = BatchNormOptions::pytorch(0.3);  // pytorch#1410
  torch_biased.moving_variance = MovingVariance::kBiased;
  check_moving_statistics(torch_biased, {4, 3, 5}, 4);
  BatchNormOptions keras_unbiased;  // tf.keras fused path
  keras_unbiased.moving_variance = MovingVariance::kUnbiased;
  keras_unbiased.momentum = 0.5;
  check_moving_statistics(keras_unbiased, {3, 2, 2, 3}, 4);
}

TEST(BatchNormConventions, ClosedFormAfterKIdenticalBatches) {
  // moving_k = m^k * moving_0 + (1 - m^k) * batch (Keras direction).
  BatchNormOptions o;
  o.momentum = 0.8;
  BatchNormDouble bn(3, o);
  const std::vector<std::int64_t> shape = {8, 3};
  const auto x = random_values<double>(24, 7, 1.5, -2.0);
  std::vector<double> y(24);
  const int k = 7;
  for (int i = 0; i < k; ++i) bn.forward(x, shape, y, true);
  const auto s = batch_stats(x, view_of(shape, -1));
  const double mk = std::pow(0.8, k);
  for (std::size_t c = 0; c < 3; ++c) {
    EXPECT_NEAR(bn.moving_mean()[c], (1 - mk) * s.mean[c], 1e-12);
    EXPECT_NEAR(bn.moving_variance()[c], mk * 1.0 + (1 - mk) * s.var[c], 1e-12);
  }
}

TEST(BatchNormConventions, PresetsHaveTheFrameworkDefaults) {
  const BatchNormOptions k = BatchNormOptions::keras();
  EXPECT_EQ(k.axis, -1);
  EXPECT_EQ(k.momentum, 0.99);
  EXPECT_EQ(k.epsilon, 1e-3);
  EXPECT_EQ(k.momentum_convention, MomentumConvention::kKeras);
  EXPECT_EQ(k.moving_variance, MovingVariance::kBiased);
  EXPECT_EQ(k.single_value, SingleValuePolicy::kOutputBeta);
  EXPECT_EQ(k.renorm_momentum, 0.99);
  const BatchNormOptions t = BatchNormOptions::pytorch();
  EXPECT_EQ(t.axis, 1);
  EXPECT_EQ(t.momentum, 0.1);
  EXPECT_EQ(t.epsilon, 1e-5);
  EXPECT_EQ(t.momentum_convention, MomentumConvention::kPyTorch);
  EXPECT_EQ(t.moving_variance, MovingVariance::kUnbiased);
  EXPECT_EQ(t.single_value, SingleValuePolicy::kError);
  // PyTorch's affine=False, track_running_stats=False: no parameters, no running statistics.
  const BatchNormOptions bare = BatchNormOptions::pytorch(0.1, false, false);
  EXPECT_FALSE(bare.center);
  EXPECT_FALSE(bare.scale);
  EXPECT_FALSE(bare.track_running_stats);
  BatchNorm none(4, bare);
  EXPECT_TRUE(none.gamma().empty());
  EXPECT_TRUE(none.beta().empty());
  EXPECT_TRUE(none.moving_mean().empty());
  BatchNorm bn(4, t);
  for (int c = 0; c < 4; ++c) {
    EXPECT_EQ(bn.gamma()[c], 1.0f);
    EXPECT_EQ(bn.beta()[c], 0.0f);
    EXPECT_EQ(bn.moving_mean()[c], 0.0f);
    EXPECT_EQ(bn.moving_variance()[c], 1.0f);
  }
}

TEST(BatchNormConventions, InitializersAndAffineSwitches) {
  BatchNormOptions o;
  o.gamma_initializer = Initializer::constant(2.5);
  o.beta_initializer = Initializer::random_uniform(-1, 1, 42);
  o.moving_mean_initializer = Initializer::random_normal(3, 0.5, 7);
  o.moving_variance_initializer = Initializer::constant(4);
  BatchNorm a(64, o), b(64, o);
  double mean = 0;
  for (int c = 0; c < 64; ++c) {
    EXPECT_EQ(a.gamma()[c], 2.5f);
    EXPECT_GE(a.beta()[c], -1.0f);
    EXPECT_LT(a.beta()[c], 1.0f);
    EXPECT_EQ(a.beta()[c], b.beta()[c]);  // seeded: deterministic
    EXPECT_EQ(a.moving_variance()[c], 4.0f);
    mean += a.moving_mean()[c] / 64.0;
  }
  EXPECT_NEAR(mean, 3.0, 0.25);  // 4 standard errors of the mean
  o.center = false;
  o.scale = false;
  BatchNormDouble bare(2, o);
  EXPECT_TRUE(bare.gamma().empty());
  EXPECT_TRUE(bare.beta().empty());
  // center = scale = false: y = x_hat.
  const std::vector<std::int64_t> shape = {4, 2};
  const std::vector<double> x = {1, 10, 2, 20, 3, 30, 6, 40};
  std::vector<double> y(8);
  bare.forward(x, shape, y, true);
  const auto s = batch_stats(x, view_of(shape, -1));
  const auto e = testing::affine_normalize(x, view_of(shape, -1), s.mean, s.var, o.epsilon,
                                           {1.0, 1.0}, {0.0, 0.0});
  for (std::size_t i = 0; i < 8; ++i) EXPECT_NEAR(y[i], e[i], kTight);
}

// Backward against the double formula: dx = a (dy - mean(dy) - x_hat mean(dy x_hat)).
TEST(BatchNormConventions, BackwardMatchesTheFormula) {
  BatchNormOptions o = BatchNormOptions::pytorch();
  BatchNormDouble bn(3, o);
  for (int c = 0; c < 3; ++c) {
    bn.gamma()[c] = 0.5 + c;
    bn.beta()[c] = -1.0 + c;
  }
  const std::vector<std::int64_t> shape = {4, 3, 5};
  const auto v = view_of(shape, 1);
  const auto x = random_values<double>(60, 3, 2.0, 1.0);
  const auto dy = random_values<double>(60, 4);
  std::vector<double> y(60), dx(60);
  bn.forward(x, shape, y, true);
  bn.backward(x, dy, dx);
  const auto s = batch_stats(x, v);
  for (std::int64_t c = 0; c < 3; ++c) {
    const auto k = static_cast<std::size_t>(c);
    const double invstd = 1 / std::sqrt(s.var[k] + o.epsilon);
    double sdy = 0, sdyx = 0;
    for (std::int64_t n = 0; n < 4; ++n)
      for (std::int64_t i = 0; i < 5; ++i) {
        const auto at = v.at(n, c, i);
        sdy += dy[at];
        sdyx += dy[at] * (x[at] - s.mean[k]) * invstd;
      }
    EXPECT_NEAR(bn.beta_grad()[k], sdy, kTight);
    EXPECT_NEAR(bn.gamma_grad()[k], sdyx, kTight);
    for (std::int64_t n = 0; n < 4; ++n)
      for (std::int64_t i = 0; i < 5; ++i) {
        const auto at = v.at(n, c, i);
        const double xhat = (x[at] - s.mean[k]) * invstd;
        const double expected =
            (0.5 + static_cast<double>(c)) * invstd * (dy[at] - sdy / 20 - xhat * sdyx / 20);
        ASSERT_NEAR(dx[at], expected, kTight);
      }
  }
  // Gradients are assigned, not accumulated: a second backward gives the same values.
  const std::vector<double> g1(bn.gamma_grad().begin(), bn.gamma_grad().end());
  bn.backward(x, dy, dx);
  for (std::size_t c = 0; c < 3; ++c) EXPECT_EQ(bn.gamma_grad()[c], g1[c]);
}

TEST(BatchNormContract, EvalNeverChangesStateAndUsesMovingStatistics) {
  BatchNormOptions o;
  o.momentum = 0.5;
  BatchNormDouble bn(2, o);
  const std::vector<std::int64_t> shape = {5, 2};
  const auto x = random_values<double>(10, 11, 3.0, 1.0);
  std::vector<double> y(10);
  bn.forward(x, shape, y, true);  // move the statistics away from their initial values
  const std::vector<double> mm(bn.moving_mean().begin(), bn.moving_mean().end());
  const std::vector<double> mv(bn.moving_variance().begin(), bn.moving_variance().end());
  const auto tracked = bn.num_batches_tracked();
  const auto x2 = random_values<double>(10, 12, 5.0, -4.0);
  const auto r = bn.forward(x2, shape, y, false);
  EXPECT_FALSE(r.updated_statistics);
  EXPECT_EQ(bn.num_batches_tracked(), tracked);
  for (std::size_t c = 0; c < 2; ++c) {
    EXPECT_EQ(bn.moving_mean()[c], mm[c]);
    EXPECT_EQ(bn.moving_variance()[c], mv[c]);
  }
  const auto e =
      testing::affine_normalize(x2, view_of(shape, -1), mm, mv, o.epsilon, {1.0, 1.0}, {0.0, 0.0});
  for (std::size_t i = 0; i < 10; ++i) EXPECT_NEAR(y[i], e[i], kTight);
  // Backward after an inference forward: dx = gamma / sqrt(moving_var + eps) * dy.
  const auto dy = random_values<double>(10, 13);
  std::vector<double> dx(10);
  bn.backward(x2, dy, dx);
  for (std::size_t i = 0; i < 10; ++i) {
    EXPECT_NEAR(dx[i], dy[i] / std::sqrt(mv[i % 2] + o.epsilon), kTight);
  }
}

TEST(BatchNormContract, FrozenLayerRunsInInferenceModeAndUpdatesNothing) {
  BatchNormOptions o;
  o.trainable = false;  // keras#7085, #9965: a frozen layer must not update its statistics
  o.moving_mean_initializer = Initializer::constant(0.5);
  o.moving_variance_initializer = Initializer::constant(2.0);
  BatchNormDouble bn(2, o);
  const std::vector<std::int64_t> shape = {5, 2};
  const auto x = random_values<double>(10, 21, 3.0, 1.0);
  std::vector<double> y(10), dx(10);
  const auto r = bn.forward(x, shape, y, /*training=*/true);
  EXPECT_FALSE(r.updated_statistics);
  EXPECT_EQ(bn.num_batches_tracked(), 0);
  for (std::size_t i = 0; i < 10; ++i) {
    EXPECT_NEAR(y[i], (x[i] - 0.5) / std::sqrt(2.0 + o.epsilon), kTight);
  }
  const auto dy = random_values<double>(10, 22);
  bn.backward(x, dy, dx);
  for (std::size_t c = 0; c < 2; ++c) {
    EXPECT_EQ(bn.moving_mean()[c], 0.5);
    EXPECT_EQ(bn.gamma_grad()[c], 0.0);
    EXPECT_EQ(bn.beta_grad()[c], 0.0);
  }
}

TEST(BatchNormContract, NoRunningStatsAlwaysUsesBatchStatistics) {
  auto o = BatchNormOptions::pytorch();
  o.track_running_stats = false;
  BatchNormDouble bn(3, o);
  EXPECT_TRUE(bn.moving_mean().empty());
  const std::vector<std::int64_t> shape = {4, 3, 2};
  const auto x = random_values<double>(24, 31, 2.0, 5.0);
  std::vector<double> y_train(24), y_eval(24);
  EXPECT_FALSE(bn.forward(x, shape, y_train, true).updated_statistics);
  EXPECT_FALSE(bn.forward(x, shape, y_eval, false).updated_statistics);
  EXPECT_EQ(bn.num_batches_tracked(), 0);
  for (std::size_t i = 0; i < 24; ++i) EXPECT_EQ(y_train[i], y_eval[i]);
}

TEST(BatchNormContract, EvalEqualsTrainWhenMovingEqualsBatchStatistics) {
  const std::vector<std::int64_t> shape = {6, 2};
  const auto x = random_values<double>(12, 41, 2.0, 3.0);
  std::vector<double> y_train(12), y_eval(12);
  // Keras, momentum 0: moving = batch (biased), so eval reproduces training exactly.
  BatchNormOptions k;
  k.momentum = 0.0;
  BatchNormDouble keras(2, k);
  keras.forward(x, shape, y_train, true);
  keras.forward(x, shape, y_eval, false);
  for (std::size_t i = 0; i < 12; ++i) EXPECT_EQ(y_train[i], y_eval[i]);
  // PyTorch, momentum 1: running_var = unbiased batch variance, so eval differs by the Bessel
  // factor: y_eval = (x - mean) / sqrt(var * M / (M - 1) + eps).
  BatchNormDouble torch(2, BatchNormOptions::pytorch(1.0));
  torch.forward(x, shape, y_train, true);
  torch.forward(x, shape, y_eval, false);
  const auto s = batch_stats(x, view_of(shape, -1));
  for (std::size_t i = 0; i < 12; ++i) {
    const std::size_t c = i % 2;
    EXPECT_NEAR(y_eval[i], (x[i] - s.mean[c]) / std::sqrt(s.var[c] * 6 / 5 + 1e-5), kTight);
    EXPECT_NEAR(y_train[i], (x[i] - s.mean[c]) / std::sqrt(s.var[c] + 1e-5), kTight);
  }
}

TEST(BatchNormContract, OneValuePerChannelFollowsTheConvention) {
  const std::vector<std::int64_t> shape = {1, 3};
  const std::vector<float> x = {1.5f, -2.0f, 7.0f};
  std::vector<float> y(3), dx(3);
  BatchNormOptions keras;
  keras.beta_initializer = Initializer::constant(0.25);
  keras.moving_variance = MovingVariance::kUnbiased;  // tensorflow#34062: must stay finite
  BatchNorm k(3, keras);
  EXPECT_TRUE(k.forward(x, shape, y, true).updated_statistics);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(y[c], 0.25f);  // y = beta
    EXPECT_TRUE(std::isfinite(k.moving_mean()[c]));
    EXPECT_TRUE(std::isfinite(k.moving_variance()[c]));
    EXPECT_FLOAT_EQ(k.moving_mean()[c], 0.01f * x[c]);
    EXPECT_FLOAT_EQ(k.moving_variance()[c], 0.99f);  // batch variance 0
  }
  const std::vector<float> dy = {1, 2, 3};
  k.backward(x, dy, dx);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(dx[c], 0.0f);
    EXPECT_EQ(k.beta_grad()[c], dy[c]);
  }

  BatchNorm torch(3, [] {
    auto o = BatchNormOptions::pytorch();
    o.axis = -1;
    return o;
  }());
  try {
    torch.forward(x, shape, y, true);
    FAIL() << "expected bnorm::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Expected more than 1 value per channel when training"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("[1, 3]"), std::string::npos) << e.what();
  }
  // The failed forward leaves nothing for backward.
  try {
    torch.backward(x, dy, dx);
    FAIL() << "expected bnorm::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no forward before"), std::string::npos) << e.what();
  }
  // Inference with one value per channel is fine in both conventions.
  EXPECT_NO_THROW(torch.forward(x, shape, y, false));
}

TEST(BatchNormContract, NonFiniteGuardSkipsTheUpdateAndReportsIt) {
  const std::vector<std::int64_t> shape = {4, 2};
  std::vector<float> good = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> bad = good;
  bad[2] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> y(8);
  BatchNormOptions o = BatchNormOptions::pytorch();
  o.axis = -1;
  o.skip_nonfinite_updates = true;
  BatchNorm guarded(2, o);
  guarded.forward(good, shape, y, true);
  const std::vector<float> mm(guarded.moving_mean().begin(), guarded.moving_mean().end());
  const std::vector<float> mv(guarded.moving_variance().begin(), guarded.moving_variance().end());
  const auto r = guarded.forward(bad, shape, y, true);
  EXPECT_TRUE(r.skipped_nonfinite);
  EXPECT_FALSE(r.updated_statistics);
  EXPECT_EQ(guarded.nonfinite_batches(), 1);
  EXPECT_EQ(guarded.num_batches_tracked(), 1);
  for (int c = 0; c < 2; ++c) {
    EXPECT_EQ(guarded.moving_mean()[c], mm[c]);
    EXPECT_EQ(guarded.moving_variance()[c], mv[c]);
  }
  EXPECT_TRUE(guarded.forward(good, shape, y, true).updated_statistics);
  // Without the guard, one NaN batch poisons the running statistics (pytorch#88474).
  o.skip_nonfinite_updates = false;
  BatchNorm plain(2, o);
  plain.forward(bad, shape, y, true);
  EXPECT_TRUE(std::isnan(plain.moving_mean()[0]));
  EXPECT_EQ(plain.nonfinite_batches(), 0);
}

TEST(BatchNormContract, SynchronizedWithOneProcessEqualsUnsynchronizedBitwise) {
  std::vector<BatchNormOptions> sets;
  sets.push_back(BatchNormOptions::keras());
  sets.push_back(BatchNormOptions::pytorch());
  sets.push_back(BatchNormOptions::pytorch(std::nullopt));
  BatchNormOptions renorm;
  renorm.renorm = true;
  renorm.renorm_clipping = {2.0, 0.5, 1.0};
  sets.push_back(renorm);
  const std::vector<std::int64_t> shape = {3, 4, 5};  // axis -1: 5 channels; axis 1: 4
  for (const auto& base : sets) {
    auto sync = base;
    sync.synchronized = true;  // communicator left null: LocalCommunicator
    const std::int64_t C = base.axis == 1 ? 4 : 5;
    BatchNorm a(C, base), b(C, sync);
    for (int step = 0; step < 3; ++step) {
      const auto x = random_values<float>(60, 50 + step, 2.0, 1.0);
      const auto dy = random_values<float>(60, 60 + step);
      std::vector<float> ya(60), yb(60), dxa(60), dxb(60);
      a.forward(x, shape, ya, true);
      b.forward(x, shape, yb, true);
      a.backward(x, dy, dxa);
      b.backward(x, dy, dxb);
      EXPECT_EQ(ya, yb);
      EXPECT_EQ(dxa, dxb);
      for (std::int64_t c = 0; c < C; ++c) {
        EXPECT_EQ(a.gamma_grad()[c], b.gamma_grad()[c]);
        EXPECT_EQ(a.beta_grad()[c], b.beta_grad()[c]);
        EXPECT_EQ(a.moving_mean()[c], b.moving_mean()[c]);
        EXPECT_EQ(a.moving_variance()[c], b.moving_variance()[c]);
      }
    }
  }
}

TEST(BatchNormContract, AdjustmentIsAppliedToXHatInTrainingOnly) {
  BatchNormOptions o;
  o.adjustment = [](std::span<const std::int64_t> shape, std::span<double> scale,
                    std::span<double> bias) {
    EXPECT_EQ(shape.size(), 2u);
    for (std::size_t c = 0; c < scale.size(); ++c) {
      scale[c] = 1.5 + static_cast<double>(c);
      bias[c] = -0.25 * static_cast<double>(c);
    }
  };
  BatchNormDouble bn(2, o);
  bn.gamma()[0] = 2.0;
  bn.gamma()[1] = -0.5;
  bn.beta()[0] = 0.5;
  bn.beta()[1] = 1.0;
  const std::vector<std::int64_t> shape = {5, 2};
  const auto v = view_of(shape, -1);
  const auto x = random_values<double>(10, 71, 2.0, 1.0);
  const auto dy = random_values<double>(10, 72);
  std::vector<double> y(10), dx(10);
  bn.forward(x, shape, y, true);
  bn.backward(x, dy, dx);
  const auto s = batch_stats(x, v);
  const double gamma[] = {2.0, -0.5}, beta[] = {0.5, 1.0};
  for (std::size_t c = 0; c < 2; ++c) {
    const double sa = 1.5 + static_cast<double>(c), ba = -0.25 * static_cast<double>(c);
    const double invstd = 1 / std::sqrt(s.var[c] + o.epsilon);
    double sdy = 0, sdyx = 0;
    for (std::size_t n = 0; n < 5; ++n) {
      const double xhat = (x[n * 2 + c] - s.mean[c]) * invstd;
      EXPECT_NEAR(y[n * 2 + c], gamma[c] * (sa * xhat + ba) + beta[c], kTight);
      sdy += dy[n * 2 + c];
      sdyx += dy[n * 2 + c] * xhat;
    }
    EXPECT_NEAR(bn.gamma_grad()[c], sa * sdyx + ba * sdy, kTight);
    EXPECT_NEAR(bn.beta_grad()[c], sdy, kTight);
    for (std::size_t n = 0; n < 5; ++n) {
      const double xhat = (x[n * 2 + c] - s.mean[c]) * invstd;
      EXPECT_NEAR(dx[n * 2 + c],
                  gamma[c] * sa * invstd * (dy[n * 2 + c] - sdy / 5 - xhat * sdyx / 5), kTight);
    }
  }
  // Inference: no adjustment.
  bn.forward(x, shape, y, false);
  for (std::size_t i = 0; i < 10; ++i) {
    const std::size_t c = i % 2;
    EXPECT_NEAR(
        y[i],
        gamma[c] * (x[i] - bn.moving_mean()[c]) / std::sqrt(bn.moving_variance()[c] + o.epsilon) +
            beta[c],
        kTight);
  }
}

// ---- one negative test per invalid option or argument, each checking the message ----

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected bnorm::Error containing '" << parts.front() << "'";
  } catch (const Error& e) {
    for (const auto& p : parts) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message: " << e.what() << "\nexpected to contain: " << p;
    }
  }
}

BatchNormOptions with(const std::function<void(BatchNormOptions&)>& set) {
  BatchNormOptions o;
  set(o);
  return o;
}

TEST(BatchNormErrors, InvalidOptionsAreRejectedAtConstruction) {
  const auto construct = [](BatchNormOptions o) { return [o] { BatchNorm bn(3, o); }; };
  expect_error([] { BatchNorm bn(0); }, {"channels = 0", ">= 1"});
  expect_error(construct(with([](auto& o) { o.momentum = 1.5; })), {"momentum = 1.5", "[0, 1]"});
  expect_error(construct(with([](auto& o) { o.momentum = -0.1; })), {"momentum = -0.1"});
  expect_error(construct(with([](auto& o) { o.momentum = std::nan(""); })), {"momentum = nan"});
  expect_error(construct(with([](auto& o) { o.renorm_momentum = 2; })),
               {"renorm_momentum = 2", "[0, 1]"});
  expect_error(construct(with([](auto& o) { o.epsilon = -1e-3; })), {"epsilon = -0.001", ">= 0"});
  expect_error(construct(with([](auto& o) { o.epsilon = INFINITY; })), {"epsilon = inf"});
  expect_error(construct(with([](auto& o) {
                 o.renorm = true;
                 o.epsilon = 0;
               })),
               {"epsilon = 0 with renorm", "sqrt(epsilon)"});
  expect_error(construct(with([](auto& o) {
                 o.renorm_clipping = {0.5, 2, 1};
               })),
               {"rmax = 0.5 < rmin = 2"});
  expect_error(construct(with([](auto& o) { o.renorm_clipping.dmax = -1; })),
               {"dmax = -1", "dmax >= 0"});
  expect_error(construct(with([](auto& o) { o.renorm_clipping.rmin = -1; })), {"rmin = -1"});
  expect_error(construct(with([](auto& o) { o.renorm_clipping.rmax = std::nan(""); })),
               {"renorm_clipping", "NaN"});
  expect_error(construct(with([](auto& o) { o.virtual_batch_size = -2; })),
               {"virtual_batch_size = -2"});
  expect_error(construct(with([](auto& o) {
                 o.virtual_batch_size = 2;
                 o.renorm = true;
               })),
               {"virtual_batch_size = 2 with renorm"});
  expect_error(construct(with([](auto& o) {
                 o.renorm = true;
                 o.track_running_stats = false;
               })),
               {"renorm = true with track_running_stats = false"});
  expect_error(construct(with([](auto& o) { o.gamma_regularizer = Regularizer::l2_only(-1); })),
               {"gamma_regularizer", "l2 = -1", ">= 0"});
  expect_error(construct(with([](auto& o) { o.beta_regularizer = Regularizer::l1_only(NAN); })),
               {"beta_regularizer", "l1 = nan"});
  expect_error(construct(with([](auto& o) { o.gamma_constraint = Constraint::max_norm(-1); })),
               {"gamma_constraint", "max_value = -1"});
  expect_error(construct(with([](auto& o) { o.beta_constraint = Constraint::min_max_norm(2, 1); })),
               {"beta_constraint", "min_value <= max_value"});
  expect_error(
      construct(with([](auto& o) { o.beta_constraint = Constraint::min_max_norm(0, 1, 1.5); })),
      {"beta_constraint", "rate in [0, 1]"});
  expect_error(
      construct(with([](auto& o) { o.gamma_initializer = Initializer::random_uniform(1, -1); })),
      {"gamma_initializer", "minval <= maxval"});
  expect_error(construct(with([](auto& o) {
                 o.moving_variance_initializer = Initializer::random_normal(0, -1);
               })),
               {"moving_variance_initializer", "stddev >= 0"});
  expect_error(
      construct(with([](auto& o) { o.moving_mean_initializer = Initializer::constant(INFINITY); })),
      {"moving_mean_initializer", "finite"});
  expect_error(
      [] {
        (void)renorm_clipping_schedule(0, {10, 3, 5, 5, 20});
      },
      {"renorm_clipping_schedule", "plain_steps < rmax_step"});
}

TEST(BatchNormErrors, InvalidInputsAreRejectedAtTheCall) {
  std::vector<float> x(24), y(24), dx(24);
  const std::vector<std::int64_t> shape = {4, 2, 3};
  expect_error(
      [&] {
        BatchNorm bn(3, with([](auto& o) { o.axis = 3; }));
        bn.forward(x, shape, y, true);
      },
      {"options.axis = 3", "[4, 2, 3]"});
  expect_error(
      [&] {
        BatchNorm bn(5);
        bn.forward(x, shape, y, true);
      },
      {"3 channels on axis -1", "expected 5"});
  expect_error(
      [&] {
        BatchNorm bn(3);
        bn.forward(std::span<const float>(x).first(20), shape, y, true);
      },
      {"x has 20", "expected 24"});
  expect_error(
      [&] {
        BatchNorm bn(3, with([](auto& o) { o.virtual_batch_size = 3; }));
        bn.forward(x, shape, y, true);
      },
      {"virtual_batch_size = 3 does not divide the batch size 4"});
  expect_error(
      [&] {
        BatchNorm bn(4, with([](auto& o) {
                       o.virtual_batch_size = 2;
                       o.axis = 0;
                     }));
        bn.forward(x, shape, y, true);
      },
      {"virtual_batch_size = 2 with channel axis 0"});
  expect_error(
      [&] {
        BatchNorm bn(3);
        bn.backward(x, y, dx);
      },
      {"no forward before"});
  expect_error(
      [&] {
        BatchNorm bn(3);
        bn.forward(x, shape, y, true);
        bn.backward(std::span<const float>(x).first(12), y, dx);
      },
      {"BatchNorm::backward", "expected 24"});
}

}  // namespace
}  // namespace bnorm
