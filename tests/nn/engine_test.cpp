// The engine's pieces against their formulas: SGD, the BN adapter's state, Rng, Batcher,
// percentiles, loss values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "bnorm/error.hpp"
#include "bnorm/nn/arch.hpp"
#include "bnorm/nn/batch_norm_layer.hpp"
#include "bnorm/nn/batcher.hpp"
#include "bnorm/nn/dense.hpp"
#include "bnorm/nn/idx.hpp"
#include "bnorm/nn/loss.hpp"
#include "bnorm/nn/metrics.hpp"
#include "bnorm/nn/mlp.hpp"
#include "bnorm/nn/sgd.hpp"
#include "gradcheck.hpp"

namespace bnorm::nn {
namespace {

TEST(NnSgd, MomentumAndWeightDecayFollowTheFormula) {
  std::vector<double> w{1.0, -2.0}, g{0.5, 0.25};
  Parameter<double> p{"w", {2}, w, g};
  Sgd<double> sgd({0.1, 0.9, 0.01, {}}, {p});
  double v0 = 0, v1 = 0, w0 = 1.0, w1 = -2.0;
  for (int step = 0; step < 3; ++step) {
    sgd.step();
    v0 = 0.9 * v0 + (0.5 + 0.01 * w0);
    v1 = 0.9 * v1 + (0.25 + 0.01 * w1);
    w0 -= 0.1 * v0;
    w1 -= 0.1 * v1;
    EXPECT_DOUBLE_EQ(w[0], w0);
    EXPECT_DOUBLE_EQ(w[1], w1);
  }
  EXPECT_DOUBLE_EQ(sgd.state()[0].value[0], v0);
}

TEST(NnSgd, LearningRateDropsMultiplyFromTheirStepOn) {
  SgdOptions o{0.1, 0.9, 0, {{100, 0.1}, {150, 0.5}}};
  validate(o);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 0), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 99), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 100), 0.1 * 0.1);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 149), 0.1 * 0.1);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 150), 0.1 * 0.1 * 0.5);
  // The step taken is the one of the rate given: plain SGD, w -= lr * g.
  std::vector<double> w{1.0}, g{2.0};
  Parameter<double> p{"w", {1}, w, g};
  Sgd<double> sgd({0.1, 0, 0, {}}, {p});
  sgd.step(0.01);
  EXPECT_DOUBLE_EQ(w[0], 1.0 - 0.01 * 2.0);
  for (const SgdOptions& bad :
       {SgdOptions{0.1, 0, 0, {{0, 0.1}}}, SgdOptions{0.1, 0, 0, {{10, 0.1}, {10, 0.1}}},
        SgdOptions{0.1, 0, 0, {{10, 0.0}}}}) {
    try {
      validate(bad);
      FAIL();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("SgdOptions::lr_drops"), std::string::npos) << e.what();
    }
  }
}

// The engine is a library: its messages name its own fields, never bnorm-train's flags.
TEST(NnErrors, NameTheLibraryFieldsNotCommandLineFlags) {
  std::vector<std::string> messages;
  auto collect = [&](auto&& f) {
    try {
      f();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      messages.emplace_back(e.what());
    }
  };
  BatchNormLayerOptions bad_momentum;
  bad_momentum.momentum = 2;
  collect([&] { validate(bad_momentum); });
  BatchNormLayerOptions bad_virtual;
  bad_virtual.virtual_batch = -1;
  collect([&] { validate(bad_virtual); });
  collect([] { validate(SgdOptions{-1, 0, 0, {}}); });
  collect([] { validate(SgdOptions{0.1, 0, -1, {}}); });
  collect([] { Batcher b(10, 0, 1); });
  collect([] { (void)parse_bn_placement("sideways"); });
  collect([] {
    Rng rng(1);
    MlpSpec spec;
    spec.hidden = {};
    (void)build_mlp<float>(spec, rng);
  });
  collect([] { (void)parse_arch("c16,x"); });
  collect([] { (void)load_idx_dataset("/nonexistent/bnorm", "train"); });
  ASSERT_EQ(messages.size(), 9U);
  for (const auto& m : messages) EXPECT_EQ(m.find("--"), std::string::npos) << m;
  EXPECT_NE(messages[0].find("BatchNormLayerOptions::momentum 2"), std::string::npos);
  EXPECT_NE(messages[2].find("SgdOptions::learning_rate -1"), std::string::npos);
}

TEST(NnSgd, RejectsBadOptionsNamingTheField) {
  EXPECT_THROW(validate(SgdOptions{0.0, 0, 0, {}}), Error);
  try {
    validate(SgdOptions{0.1, 1.0, 0, {}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("SgdOptions::momentum 1; expected a value in [0, 1)"),
              std::string::npos)
        << e.what();
  }
}

TEST(NnBatchNorm, MovingStatisticsUseKerasMomentumAndBiasedVariance) {
  Rng rng(11);
  BatchNormLayerOptions o;
  o.momentum = 0.9;
  BatchNormLayer<double> bn(3, o);
  const Tensor<double> x = testing::random_tensor(5, 3, rng, 2.0, 1.0);
  Tensor<double> y;
  bn.forward(x, y, Mode::kTraining);
  for (std::int64_t j = 0; j < 3; ++j) {
    double mean = 0, var = 0;
    for (std::int64_t i = 0; i < 5; ++i) mean += x(i, j) / 5;
    for (std::int64_t i = 0; i < 5; ++i) var += (x(i, j) - mean) * (x(i, j) - mean) / 5;
    EXPECT_NEAR(bn.moving_mean()[j], 0.9 * 0 + 0.1 * mean, 1e-12);
    EXPECT_NEAR(bn.moving_variance()[j], 0.9 * 1 + 0.1 * var, 1e-12);
  }
  // Inference uses the moving statistics: y = gamma (x - mean) / sqrt(var + eps) + beta.
  bn.gamma()[1] = 2.0;
  bn.beta()[2] = -0.5;
  bn.forward(x, y, Mode::kInference);
  for (std::int64_t i = 0; i < 5; ++i) {
    for (std::int64_t j = 0; j < 3; ++j) {
      const double want = bn.gamma()[j] * (x(i, j) - bn.moving_mean()[j]) /
                              std::sqrt(bn.moving_variance()[j] + o.epsilon) +
                          bn.beta()[j];
      EXPECT_NEAR(y(i, j), want, 1e-12);
    }
  }
  // Batch-statistics mode normalizes like training but changes no state.
  const std::vector<double> before(bn.moving_mean().begin(), bn.moving_mean().end());
  bn.forward(x, y, Mode::kBatchStatistics);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), bn.moving_mean().begin()));
  EXPECT_THROW(bn.backward(y, nullptr), Error);
}

TEST(NnBatchNorm, RenormWithUnitClipsIsBatchNorm) {
  // rmax = 1, dmax = 0 force r = 1, d = 0: batch renormalization is then exactly BN.
  Rng rng(12);
  const Tensor<double> x = testing::random_tensor(8, 4, rng, 3.0, -2.0);
  BatchNormLayerOptions plain, renorm;
  renorm.renorm = true;
  renorm.renorm_rmax = 1;
  renorm.renorm_dmax = 0;
  BatchNormLayer<double> a(4, plain), b(4, renorm);
  for (std::size_t j = 0; j < 4; ++j) {
    a.gamma()[j] = b.gamma()[j] = 1.0 + 0.25 * static_cast<double>(j);
    a.beta()[j] = b.beta()[j] = -0.5 * static_cast<double>(j);
  }
  Tensor<double> ya, yb, dxa, dxb;
  a.forward(x, ya, Mode::kTraining);
  b.forward(x, yb, Mode::kTraining);
  for (std::int64_t i = 0; i < ya.size(); ++i) EXPECT_NEAR(ya.data()[i], yb.data()[i], 1e-13);
  const Tensor<double> dy = testing::random_tensor(8, 4, rng);
  a.backward(dy, &dxa);
  b.backward(dy, &dxb);
  for (std::int64_t i = 0; i < dxa.size(); ++i) EXPECT_NEAR(dxa.data()[i], dxb.data()[i], 1e-13);
  auto pa = a.parameters(), pb = b.parameters();
  for (std::size_t k = 0; k < pa.size(); ++k) {
    for (std::size_t j = 0; j < 4; ++j) EXPECT_NEAR(pa[k].grad[j], pb[k].grad[j], 1e-13);
  }
}

TEST(NnBatchNorm, RejectsVirtualBatchThatDoesNotDivideTheBatch) {
  BatchNormLayerOptions o;
  o.virtual_batch = 4;
  BatchNormLayer<float> bn(2, o);
  Tensor<float> x(6, 2), y;
  try {
    bn.forward(x, y, Mode::kTraining);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("virtual_batch 4"), std::string::npos) << e.what();
  }
}

TEST(NnLoss, MatchesTheDefinitionAndStaysFiniteForHugeLogits) {
  Tensor<double> logits(2, 3);
  logits(0, 0) = 1;
  logits(0, 1) = 2;
  logits(0, 2) = 3;
  logits(1, 0) = 1000;  // exp would overflow without the max shift
  logits(1, 1) = 0;
  logits(1, 2) = -1000;
  const std::vector<std::int32_t> labels{2, 1};
  const double want0 = -std::log(std::exp(3.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(3.0)));
  const double want1 = 1000.0;  // log-sum-exp = 1000 (up to e^-1000), minus z_label = 0
  EXPECT_NEAR(softmax_cross_entropy<double>(logits, labels, 2, nullptr), (want0 + want1) / 2,
              1e-12);
  EXPECT_EQ(count_correct(logits, labels), 1);
  const std::vector<std::int32_t> bad{3, 0};
  EXPECT_THROW((void)softmax_cross_entropy<double>(logits, bad, 2, nullptr), Error);
}

TEST(NnRng, DeterministicUniformAndNormal) {
  Rng a(42), b(42), c(43);
  EXPECT_EQ(a.next_u64(), b.next_u64());
  EXPECT_NE(a.next_u64(), c.next_u64());
  Rng r(7);
  const int n = 200000;
  double sum = 0, sum2 = 0;
  std::array<int, 10> buckets{};
  for (int i = 0; i < n; ++i) {
    const double z = r.normal();
    sum += z;
    sum2 += z * z;
    ++buckets.at(r.below(10));
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sum2 / n, 1.0, 0.01);
  for (int count : buckets) EXPECT_NEAR(count, n / 10, n / 100);
}

TEST(NnBatcher, EpochsArePermutationsAndStateRestoresTheOrder) {
  Batcher a(10, 4, 5);
  std::vector<std::int64_t> first;
  for (int k = 0; k < 5; ++k) {
    const auto b = a.next();
    first.insert(first.end(), b.begin(), b.end());
  }
  // 20 indices = two epochs of 10, each a permutation of 0..9.
  for (int e = 0; e < 2; ++e) {
    std::set<std::int64_t> s(first.begin() + e * 10, first.begin() + e * 10 + 10);
    EXPECT_EQ(s.size(), 10u);
  }
  EXPECT_FALSE(std::equal(first.begin(), first.begin() + 10, first.begin() + 10));
  // Restore the state after 2 batches into a fresh batcher: the same continuation.
  Batcher b(10, 4, 5);
  (void)b.next();
  (void)b.next();
  Batcher c(10, 4, 5);
  c.set_state(b.state());
  for (int k = 0; k < 3; ++k) {
    const auto x = b.next();
    const auto y = c.next();
    EXPECT_TRUE(std::equal(x.begin(), x.end(), y.begin()));
  }
  EXPECT_THROW(c.set_state({5, 0, 11}), Error);
}

TEST(NnBatcher, ShardsCoverTheGlobalBatchExactlyOnce) {
  for (int ranks = 1; ranks <= 7; ++ranks) {
    std::int64_t next = 0;
    for (int r = 0; r < ranks; ++r) {
      const Shard s = shard_of(60, r, ranks);
      EXPECT_EQ(s.begin, next);
      next = s.end;
    }
    EXPECT_EQ(next, 60);
  }
}

TEST(NnMetrics, PercentileInterpolatesLikeNumPy) {
  // numpy.percentile([1, 2, 3, 4], [15, 50, 85]) == [1.45, 2.5, 3.55]
  const std::vector<double> v{4, 1, 3, 2};
  EXPECT_NEAR(percentile(v, 15), 1.45, 1e-12);
  EXPECT_NEAR(percentile(v, 50), 2.5, 1e-12);
  EXPECT_NEAR(percentile(v, 85), 3.55, 1e-12);
  EXPECT_EQ(percentile(v, 0), 1);
  EXPECT_EQ(percentile(v, 100), 4);
  EXPECT_THROW((void)percentile({}, 50), Error);
}

}  // namespace
}  // namespace bnorm::nn
