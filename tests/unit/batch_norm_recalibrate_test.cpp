// Statistics without output: update_statistics against torch.batch_norm_update_stats (golden
// fixture bn_update_stats from tests/golden/batch_norm/make_golden.py) and a long double oracle,
// and equal in state to a training forward; recalibrate against PyTorch's cumulative running
// statistics (Algorithm 2) and a long double oracle of both population definitions.
#include <gtest/gtest.h>

#include <bnorm/batch_norm.hpp>
#include <bnorm/error.hpp>
#include <bnorm/safetensors.hpp>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "layer_reference.hpp"

namespace bnorm {
namespace {

namespace st = safetensors;
using testing::random_values;
const std::filesystem::path kGolden = std::filesystem::path(BNORM_TESTS_DIR) / "golden/batch_norm";

std::vector<float> get(const st::File& f, const std::string& name) {
  return f.tensors.at(name).values<float>(name);
}

// torch.testing's float32 defaults.
void expect_close(std::span<const float> actual, const std::vector<float>& expected,
                  const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], 1e-5 + 1.3e-6 * std::abs(expected[i])) << what << i;
  }
}

// Per channel of x laid out [n][c][l]: mean and M2 in long double, two passes.
struct Exact {
  long double count, mean, m2;
};
Exact exact(const std::vector<float>& x, std::int64_t n, std::int64_t channels, std::int64_t l,
            std::int64_t c) {
  long double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < l; ++j) sum += x[(i * channels + c) * l + j];
  }
  const long double count = static_cast<long double>(n * l), mean = sum / count;
  long double m2 = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < l; ++j) {
      const long double d = x[(i * channels + c) * l + j] - mean;
      m2 += d * d;
    }
  }
  return {count, mean, m2};
}

TEST(UpdateStatistics, MatchesTorchBatchNormUpdateStatsAndALongDoubleOracle) {
  const st::File f = st::load(kGolden / "bn_update_stats.safetensors");
  ASSERT_EQ(f.metadata.at("bnorm.golden_format"), "1");
  BatchNorm bn(3, BatchNormOptions::pytorch(0.1));
  const auto before_mean = get(f, "before.running_mean");
  const auto before_var = get(f, "before.running_var");
  std::copy(before_mean.begin(), before_mean.end(), bn.moving_mean().begin());
  std::copy(before_var.begin(), before_var.end(), bn.moving_variance().begin());
  const auto x = get(f, "x");
  const std::int64_t shape[] = {6, 3, 5};
  const ForwardResult r = bn.update_statistics(x, shape);
  EXPECT_TRUE(r.updated_statistics);
  EXPECT_EQ(bn.num_batches_tracked(), 1);
  // torch returns the batch mean and the biased variance, and averages the unbiased one.
  expect_close(bn.batch_mean(), get(f, "mean"), "mean");
  expect_close(bn.batch_variance(), get(f, "var"), "var");
  expect_close(bn.moving_mean(), get(f, "after.running_mean"), "running_mean");
  expect_close(bn.moving_variance(), get(f, "after.running_var"), "running_var");
  for (std::int64_t c = 0; c < 3; ++c) {
    const Exact e = exact(x, 6, 3, 5, c);
    const long double mean = 0.9L * before_mean[c] + 0.1L * e.mean;
    const long double var = 0.9L * before_var[c] + 0.1L * e.m2 / (e.count - 1);
    const double em = static_cast<double>(e.mean);
    EXPECT_NEAR(bn.batch_mean()[c], em, 1.2e-7 * std::abs(em)) << c;
    EXPECT_NEAR(bn.moving_mean()[c], static_cast<float>(mean),
                2e-7 * std::abs(static_cast<double>(mean)))
        << c;
    EXPECT_NEAR(bn.moving_variance()[c], static_cast<float>(var), 2e-7 * static_cast<double>(var))
        << c;
  }
  // The statistics are those of a batch far from zero (mean ~100): no cancellation.
  EXPECT_GT(bn.batch_mean()[0], 90.0f);
}

// The state after update_statistics equals the state after a training forward of the same
// batch, bitwise, for the plain, ghost, renorm and Keras-convention layers; no y is needed and
// the backward cache is invalidated.
TEST(UpdateStatistics, LeavesTheStateATrainingForwardLeaves) {
  auto ghost = BatchNormOptions::pytorch();
  ghost.virtual_batch_size = 2;
  auto renorm = BatchNormOptions::keras();
  renorm.renorm = true;
  renorm.axis = 1;
  auto keras = BatchNormOptions::keras();
  keras.axis = 1;
  for (const auto& options : {BatchNormOptions::pytorch(), ghost, renorm, keras}) {
    BatchNorm trained(4, options), updated(4, options);
    const std::int64_t shape[] = {6, 4, 7};
    for (std::uint32_t step = 0; step < 2; ++step) {
      const auto x = random_values<float>(6 * 4 * 7, 11 + step, 2.0, 5.0);
      std::vector<float> y(x.size());
      trained.forward(x, shape, y, true);
      updated.update_statistics(x, shape);
    }
    const auto eq = [](std::span<const float> a, std::span<const float> b) {
      return std::vector<float>(a.begin(), a.end()) == std::vector<float>(b.begin(), b.end());
    };
    EXPECT_TRUE(eq(trained.moving_mean(), updated.moving_mean()));
    EXPECT_TRUE(eq(trained.moving_variance(), updated.moving_variance()));
    EXPECT_TRUE(eq(trained.renorm_mean(), updated.renorm_mean()));
    EXPECT_TRUE(eq(trained.renorm_stddev(), updated.renorm_stddev()));
    EXPECT_TRUE(eq(trained.moving_stddev(), updated.moving_stddev()));
    EXPECT_TRUE(eq(trained.batch_mean(), updated.batch_mean()));
    EXPECT_TRUE(eq(trained.batch_variance(), updated.batch_variance()));
    EXPECT_EQ(trained.num_batches_tracked(), updated.num_batches_tracked());
    std::vector<float> dy(6 * 4 * 7, 1.0f), dx(dy.size());
    EXPECT_THROW(updated.backward(dy, dy, dx), Error);
  }
}

TEST(UpdateStatistics, RefusesWhatForwardRefuses) {
  BatchNorm bn(3, BatchNormOptions::pytorch());
  const std::vector<float> one = {1, 2, 3};
  const std::int64_t single[] = {1, 3};
  EXPECT_THROW(bn.update_statistics(one, single), Error);  // one value per channel, kError
  const std::int64_t wrong[] = {1, 4};
  EXPECT_THROW(bn.update_statistics(std::vector<float>(4), wrong), Error);
  EXPECT_EQ(bn.num_batches_tracked(), 0);
  BatchNorm untracked(3, BatchNormOptions::pytorch(0.1, true, false));
  const std::int64_t ok[] = {2, 3};
  EXPECT_THROW(untracked.update_statistics(std::vector<float>(6), ok), Error);
}

// docs/semantics.md's worked example: batches [1, 2, 3, 6] and [0, 0, 2, 2], one channel.
TEST(Recalibrate, WorkedExample) {
  const std::vector<double> a = {1, 2, 3, 6}, b = {0, 0, 2, 2};
  const std::int64_t shape[] = {4, 1};
  const std::vector<BatchRef<double>> batches = {{a, shape}, {b, shape}};
  BatchNormDouble bn(1);
  bn.recalibrate(batches);
  EXPECT_DOUBLE_EQ(bn.moving_mean()[0], 2.0);
  EXPECT_DOUBLE_EQ(bn.moving_variance()[0], 3.0);  // (14/3 + 4/3) / 2
  EXPECT_EQ(bn.num_batches_tracked(), 2);
  bn.recalibrate(batches, PopulationStatistics::kPooled);
  EXPECT_DOUBLE_EQ(bn.moving_mean()[0], 2.0);
  EXPECT_DOUBLE_EQ(bn.moving_variance()[0], 26.0 / 7.0);
}

TEST(Recalibrate, Algorithm2MatchesPyTorchCumulativeRunningStatistics) {
  const st::File f = st::load(kGolden / "bn_update_stats.safetensors");
  std::vector<std::vector<float>> xs;
  for (int k = 0; k < 4; ++k) xs.push_back(get(f, "batch" + std::to_string(k) + ".x"));
  const std::int64_t shape[] = {6, 3, 5};
  std::vector<BatchRef<float>> batches;
  for (const auto& x : xs) batches.push_back({x, shape});
  BatchNorm bn(3, BatchNormOptions::pytorch());
  bn.recalibrate(batches);
  expect_close(bn.moving_mean(), get(f, "recal.running_mean"), "running_mean");
  expect_close(bn.moving_variance(), get(f, "recal.running_var"), "running_var");
  EXPECT_EQ(bn.num_batches_tracked(),
            f.tensors.at("recal.num_batches_tracked").values<std::int64_t>("n")[0]);
  // The same through update_statistics with the cumulative average, batch by batch.
  BatchNorm cumulative(3, BatchNormOptions::pytorch(std::nullopt));
  for (const auto& x : xs) cumulative.update_statistics(x, shape);
  expect_close(cumulative.moving_mean(), get(f, "recal.running_mean"), "cumulative mean");
  expect_close(cumulative.moving_variance(), get(f, "recal.running_var"), "cumulative var");
}

// Unequal batch sizes far from zero, both definitions, against long double; float results are
// the oracle rounded once (within 1 ulp), double ones within 1e-12.
TEST(Recalibrate, BothDefinitionsMatchALongDoubleOracle) {
  const std::int64_t C = 3, L = 4;
  const std::vector<std::int64_t> sizes = {5, 2, 9, 1};
  std::vector<std::vector<float>> xs;
  std::vector<std::vector<std::int64_t>> shapes;
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    xs.push_back(random_values<float>(
        static_cast<std::size_t>(sizes[k] * C * L), static_cast<std::uint32_t>(40 + k),
        1.0 + static_cast<double>(k), 1e4 + 3.0 * static_cast<double>(k)));
    shapes.push_back({sizes[k], C, L});
  }
  std::vector<BatchRef<float>> batches;
  std::vector<BatchRef<double>> batches_d;
  std::vector<std::vector<double>> xs_d;
  for (const auto& x : xs) xs_d.emplace_back(x.begin(), x.end());
  for (std::size_t k = 0; k < xs.size(); ++k) {
    batches.push_back({xs[k], shapes[k]});
    batches_d.push_back({xs_d[k], shapes[k]});
  }
  for (const auto kind : {PopulationStatistics::kAlgorithm2, PopulationStatistics::kPooled}) {
    BatchNorm bn(C, BatchNormOptions::pytorch());
    BatchNormDouble bd(C, BatchNormOptions::pytorch());
    bn.recalibrate(batches, kind);
    bd.recalibrate(batches_d, kind);
    for (std::int64_t c = 0; c < C; ++c) {
      long double mean_sum = 0, var_sum = 0, n = 0, total = 0;
      std::vector<Exact> parts;
      for (std::size_t k = 0; k < xs.size(); ++k) {
        const Exact e = exact(xs[k], sizes[k], C, L, c);
        parts.push_back(e);
        mean_sum += e.mean;
        var_sum += e.m2 / (e.count - 1);
        n += e.count;
        total += e.mean * e.count;
      }
      long double mean = mean_sum / parts.size(), var = var_sum / parts.size();
      if (kind == PopulationStatistics::kPooled) {
        mean = total / n;
        long double m2 = 0;
        for (const auto& e : parts) m2 += e.m2 + e.count * (e.mean - mean) * (e.mean - mean);
        var = m2 / (n - 1);
      }
      const float mf = static_cast<float>(mean), vf = static_cast<float>(var);
      EXPECT_NEAR(bn.moving_mean()[c], mf, std::abs(mf) * 1.2e-7) << c;
      EXPECT_NEAR(bn.moving_variance()[c], vf, vf * 1.2e-7) << c;
      EXPECT_NEAR(bd.moving_mean()[c], static_cast<double>(mean),
                  std::abs(static_cast<double>(mean)) * 1e-12)
          << c;
      EXPECT_NEAR(bd.moving_variance()[c], static_cast<double>(var),
                  static_cast<double>(var) * 1e-12)
          << c;
    }
  }
  // The two definitions differ here (batch means spread by 3 per batch, unequal sizes).
  BatchNormDouble a(C, BatchNormOptions::pytorch()), p(C, BatchNormOptions::pytorch());
  a.recalibrate(batches_d, PopulationStatistics::kAlgorithm2);
  p.recalibrate(batches_d, PopulationStatistics::kPooled);
  EXPECT_GT(std::abs(a.moving_variance()[0] - p.moving_variance()[0]), 0.1);
  EXPECT_GT(std::abs(a.moving_mean()[0] - p.moving_mean()[0]), 0.1);
}

TEST(Recalibrate, RefusesBadBatchesAndChangesNothing) {
  BatchNorm bn(2);
  EXPECT_THROW(bn.recalibrate({}), Error);
  const std::vector<float> good = {1, 2, 3, 4}, bad = {1, 2, 3};
  const std::int64_t good_shape[] = {2, 2}, bad_shape[] = {1, 3};
  const std::vector<BatchRef<float>> batches = {{good, good_shape}, {bad, bad_shape}};
  try {
    bn.recalibrate(batches);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("batch 1"), std::string::npos) << e.what();
  }
  EXPECT_EQ(bn.moving_mean()[0], 0.0f);
  EXPECT_EQ(bn.moving_variance()[0], 1.0f);
  const std::int64_t empty_shape[] = {0, 2};
  const std::vector<BatchRef<float>> empty = {{std::span<const float>(), empty_shape}};
  EXPECT_THROW(bn.recalibrate(empty), Error);
}

}  // namespace
}  // namespace bnorm
