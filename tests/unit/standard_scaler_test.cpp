// StandardScaler against independent references: a long-double two-pass oracle, the same data
// fitted another way (one fit vs partial_fit batches, weights vs repeated rows, NaNs vs the
// column without them), exact dyadic data, a communicator that plays two ranks, and every error
// a user can cause. scikit-learn's own outputs: standard_scaler_golden_test.cpp.
#include <gtest/gtest.h>

#include <bnorm/standard_scaler.hpp>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "support/support.hpp"

namespace bnorm {
namespace {

using test::message_of;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
// Means are compared within 8 ulps of the data's magnitude (|mean| + 4 std): a sum of n values
// in any order is that close after division by n, for the sizes used here.
constexpr double kMeanTol = 8 * std::numeric_limits<double>::epsilon();

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// rows x features, column f ~ N(means[f], stds[f]).
template <class T>
std::vector<T> normal_data(std::int64_t rows, const std::vector<double>& means,
                           const std::vector<double>& stds, unsigned seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> n01;
  std::vector<T> x;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::size_t f = 0; f < means.size(); ++f) {
      x.push_back(static_cast<T>(means[f] + stds[f] * n01(gen)));
    }
  }
  return x;
}

// Dyadic values k/4 in [-8, 8): every sum, mean and variance of such data is exact in double.
std::vector<double> dyadic_data(std::int64_t rows, std::int64_t features, unsigned seed) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int> k(-32, 31);
  std::vector<double> x(static_cast<std::size_t>(rows * features));
  for (double& v : x) v = k(gen) / 4.0;
  return x;
}

// Two-pass mean and biased variance of column f in long double, skipping NaNs.
template <class T>
std::pair<long double, long double> reference(const std::vector<T>& x, std::size_t F, std::size_t f,
                                              const std::vector<T>& w = {}) {
  long double sw = 0, swx = 0;
  for (std::size_t r = 0; r * F < x.size(); ++r) {
    const long double v = x[r * F + f];
    if (std::isnan(static_cast<double>(v))) continue;
    const long double wr = w.empty() ? 1 : w[r];
    sw += wr;
    swx += wr * v;
  }
  const long double mean = swx / sw;
  long double m2 = 0;
  for (std::size_t r = 0; r * F < x.size(); ++r) {
    const long double v = x[r * F + f];
    if (std::isnan(static_cast<double>(v))) continue;
    const long double wr = w.empty() ? 1 : w[r];
    m2 += wr * (v - mean) * (v - mean);
  }
  return {mean, m2 / sw};
}

template <class T>
class StandardScalerTyped : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(StandardScalerTyped, Types);

// Means far from zero (1e6 with std 1: E[x^2] - E[x]^2 would lose everything), tiny and large
// spreads: the statistics are exact to a few ulps of the long-double two-pass oracle.
TYPED_TEST(StandardScalerTyped, FitMatchesLongDoubleTwoPass) {
  using T = TypeParam;
  const std::vector<double> means{0, 1e6, -3, 1e3, 0.5}, stds{1, 1, 1e-3, 100, 2};
  const auto x = normal_data<T>(1000, means, stds, 1);
  StandardScaler s;
  s.fit(std::span<const T>(x), 5);
  for (std::size_t f = 0; f < 5; ++f) {
    const auto [mean, var] = reference(x, 5, f);
    EXPECT_EQ(s.n_samples_seen()[f], 1000);
    EXPECT_NEAR(s.mean()[f], static_cast<double>(mean),
                kMeanTol * (std::abs(means[f]) + 4 * stds[f]));
    EXPECT_NEAR(s.var()[f], static_cast<double>(var), 1e-14 * static_cast<double>(var)) << f;
    EXPECT_EQ(s.scale()[f], std::sqrt(s.var()[f]));
  }
}

TYPED_TEST(StandardScalerTyped, PartialFitBatchesEqualOneFit) {
  using T = TypeParam;
  const std::vector<double> means{5, -1e4, 0}, stds{2, 3, 1e-2};
  const auto x = normal_data<T>(777, means, stds, 2);
  StandardScaler whole, parts;
  whole.fit(std::span<const T>(x), 3);
  // Batches of 1, 300, 6 and 470 rows.
  std::size_t begin = 0;
  for (std::size_t rows : {1u, 300u, 6u, 470u}) {
    parts.partial_fit(std::span<const T>(x).subspan(begin * 3, rows * 3), 3);
    begin += rows;
  }
  ASSERT_EQ(begin, 777u);
  for (std::size_t f = 0; f < 3; ++f) {
    EXPECT_EQ(parts.n_samples_seen()[f], 777);
    EXPECT_NEAR(parts.mean()[f], whole.mean()[f], kMeanTol * (std::abs(means[f]) + 4 * stds[f]));
    EXPECT_NEAR(parts.var()[f], whole.var()[f], 1e-13 * whole.var()[f]);
  }
}

// On exact data the statistics are exact whichever way they are computed: bitwise equal.
TEST(StandardScaler, ExactDataGivesExactStatisticsEveryWay) {
  const auto x = dyadic_data(256, 4, 3);
  StandardScaler whole, parts;
  whole.fit(std::span<const double>(x), 4);
  // Batches of 64, 64 and 128 rows: every merge weight (n_b / n = 1/2) is exact too.
  parts.partial_fit(std::span<const double>(x).first(64 * 4), 4);
  parts.partial_fit(std::span<const double>(x).subspan(64 * 4, 64 * 4), 4);
  parts.partial_fit(std::span<const double>(x).subspan(128 * 4), 4);
  for (std::size_t f = 0; f < 4; ++f) {
    const auto [mean, var] = reference(x, 4, f);
    EXPECT_EQ(whole.mean()[f], static_cast<double>(mean));
    EXPECT_EQ(whole.var()[f], static_cast<double>(var));
    EXPECT_EQ(parts.mean()[f], whole.mean()[f]);
    EXPECT_EQ(parts.var()[f], whole.var()[f]);
  }
}

TEST(StandardScaler, StatisticsDoNotDependOnTheThreadCount) {
  const auto x = normal_data<float>(5000, {1, 2, 3, 4, 5, 6, 7}, {1, 1, 1, 1, 1, 1, 1}, 4);
  StandardScaler one, two;
  {
    const test::ScopedThreads threads(1);
    one.fit(std::span<const float>(x), 7);
  }
  {
    const test::ScopedThreads threads(2);
    two.fit(std::span<const float>(x), 7);
  }
  for (std::size_t f = 0; f < 7; ++f) {
    EXPECT_EQ(one.mean()[f], two.mean()[f]);
    EXPECT_EQ(one.var()[f], two.var()[f]);
  }
}

// NaNs are skipped per feature: each column's statistics are those of its non-NaN values.
TYPED_TEST(StandardScalerTyped, NaNsAreIgnoredByFitAndKeptByTransform) {
  using T = TypeParam;
  auto x = normal_data<T>(600, {1, 100, -5}, {1, 5, 0.1}, 5);
  std::mt19937_64 gen(6);
  for (std::size_t k = 0; k < x.size(); ++k) {
    if (gen() % 7 == 0) x[k] = static_cast<T>(kNaN);
  }
  StandardScaler s;
  s.fit(std::span<const T>(x), 3);
  for (std::size_t f = 0; f < 3; ++f) {
    std::vector<T> column;
    for (std::size_t r = 0; r < 600; ++r) {
      if (!std::isnan(static_cast<double>(x[r * 3 + f]))) column.push_back(x[r * 3 + f]);
    }
    ASSERT_LT(column.size(), 590u);
    StandardScaler one;
    one.fit(std::span<const T>(column), 1);
    EXPECT_EQ(s.n_samples_seen()[f], static_cast<double>(column.size()));
    EXPECT_NEAR(s.mean()[f], one.mean()[0], 1e-15 * std::abs(one.mean()[0]));
    EXPECT_NEAR(s.var()[f], one.var()[0], 1e-14 * one.var()[0]);
  }
  const auto y = s.transform(std::span<const T>(x));
  for (std::size_t k = 0; k < x.size(); ++k) {
    EXPECT_EQ(std::isnan(static_cast<double>(y[k])), std::isnan(static_cast<double>(x[k])));
  }
}

// A feature with no sample yet has NaN statistics (sklearn's 0 / 0); unlike sklearn, a later
// batch with samples gives that feature its true statistics.
TEST(StandardScaler, AFeatureWithoutSamplesIsNaNUntilItGetsSome) {
  StandardScaler s;
  const std::vector<double> first{1, kNaN, 3, kNaN};
  s.partial_fit(std::span<const double>(first), 2);
  EXPECT_EQ(s.n_samples_seen()[1], 0);
  EXPECT_TRUE(std::isnan(s.mean()[1]) && std::isnan(s.var()[1]) && std::isnan(s.scale()[1]));
  const std::vector<double> second{5, 2, 7, 6};
  s.partial_fit(std::span<const double>(second), 2);
  EXPECT_EQ(s.n_samples_seen()[1], 2);
  EXPECT_EQ(s.mean()[1], 4);
  EXPECT_EQ(s.var()[1], 4);
  EXPECT_EQ(s.mean()[0], 4);  // 1, 3, 5, 7
  EXPECT_EQ(s.var()[0], 5);
}

TYPED_TEST(StandardScalerTyped, IntegerWeightsEqualRepeatedRows) {
  using T = TypeParam;
  const auto x = normal_data<T>(300, {3, -200}, {1, 7}, 7);
  std::vector<T> weights, repeated;
  std::mt19937_64 gen(8);
  for (std::size_t r = 0; r < 300; ++r) {
    const int w = static_cast<int>(gen() % 4);  // 0 drops the row
    weights.push_back(static_cast<T>(w));
    for (int k = 0; k < w; ++k) repeated.insert(repeated.end(), {x[2 * r], x[2 * r + 1]});
  }
  StandardScaler weighted, plain;
  weighted.fit(std::span<const T>(x), 2, std::span<const T>(weights));
  plain.fit(std::span<const T>(repeated), 2);
  for (std::size_t f = 0; f < 2; ++f) {
    EXPECT_EQ(weighted.n_samples_seen()[f], static_cast<double>(repeated.size() / 2));
    EXPECT_NEAR(weighted.mean()[f], plain.mean()[f], 1e-15 * std::abs(plain.mean()[f]));
    EXPECT_NEAR(weighted.var()[f], plain.var()[f], 1e-14 * plain.var()[f]);
    const auto [mean, var] = reference(x, 2, f, weights);
    EXPECT_NEAR(weighted.var()[f], static_cast<double>(var), 1e-14 * static_cast<double>(var));
  }
}

// scale_ is 1 exactly where sklearn's bound says the variance is rounding noise; transform then
// only centers. Not where sqrt(var) is merely small (the older 10*eps rule).
TEST(StandardScaler, ConstantAndNearConstantFeaturesGetScaleOne) {
  std::vector<double> x;
  std::mt19937_64 gen(9);
  std::normal_distribution<double> n01;
  for (int r = 0; r < 100; ++r) {
    x.insert(x.end(), {7.0, 1e6 + 1e-9 * n01(gen), 1e5 + 1e-3 * n01(gen), 1e-9 * n01(gen)});
  }
  StandardScaler s;
  s.fit(std::span<const double>(x), 4);
  EXPECT_EQ(s.var()[0], 0);
  EXPECT_EQ(s.scale()[0], 1);
  EXPECT_GT(std::sqrt(s.var()[1]), 1e-10);  // not 0, but below the bound: noise
  EXPECT_EQ(s.scale()[1], 1);
  EXPECT_NE(s.scale()[2], 1);
  EXPECT_NE(s.scale()[3], 1);  // tiny values, tiny spread, but not constant
  const auto y = s.transform(std::span<const double>(x));
  EXPECT_EQ(y[0], 0);
  EXPECT_EQ(y[1], x[1] - s.mean()[1]);
}

TEST(StandardScaler, IsConstantFeatureIsSklearnsInequality) {
  constexpr double eps = std::numeric_limits<double>::epsilon();
  EXPECT_TRUE(StandardScaler::is_constant_feature(0, 5, 10));
  EXPECT_FALSE(StandardScaler::is_constant_feature(1e-30, 0, 10));  // bound 10 eps 1e-30 < var
  // n = 1, mean = 1: the bound is eps var + eps^2. var = eps^2 is under it, 2 eps^2 above.
  EXPECT_TRUE(StandardScaler::is_constant_feature(eps * eps, 1, 1));
  EXPECT_FALSE(StandardScaler::is_constant_feature(2 * eps * eps, 1, 1));
  // The mean term scales with n: mean 1e6, n 100 -> bound (100 * 1e6 * eps)^2 ~ 4.9e-16.
  EXPECT_TRUE(StandardScaler::is_constant_feature(4e-16, 1e6, 100));
  EXPECT_FALSE(StandardScaler::is_constant_feature(6e-16, 1e6, 100));
  EXPECT_FALSE(StandardScaler::is_constant_feature(kNaN, 1, 1));
}

TYPED_TEST(StandardScalerTyped, FlagsChooseWhatIsComputedAndApplied) {
  using T = TypeParam;
  const auto x = normal_data<T>(50, {10, -4}, {2, 3}, 10);
  StandardScaler both(true, true), center(true, false), scale(false, true), neither(false, false);
  for (auto* s : {&both, &center, &scale, &neither}) s->fit(std::span<const T>(x), 2);
  EXPECT_EQ(center.var().size(), 0u);
  EXPECT_EQ(center.scale().size(), 0u);
  EXPECT_EQ(scale.mean().size(), 2u);  // sklearn computes mean_ also without centering
  EXPECT_EQ(neither.mean().size(), 0u);
  EXPECT_EQ(neither.n_samples_seen()[1], 50);
  const std::vector<T> row{x[0], x[1]};
  for (std::size_t f = 0; f < 2; ++f) {
    const double v = row[f];
    EXPECT_EQ(center.transform(std::span<const T>(row))[f], static_cast<T>(v - center.mean()[f]));
    EXPECT_EQ(scale.transform(std::span<const T>(row))[f], static_cast<T>(v / scale.scale()[f]));
    EXPECT_EQ(neither.transform(std::span<const T>(row))[f], row[f]);
    EXPECT_EQ(both.transform(std::span<const T>(row))[f],
              static_cast<T>(static_cast<T>(v - both.mean()[f]) / both.scale()[f]));
  }
}

TYPED_TEST(StandardScalerTyped, TransformedDataHasMeanZeroAndUnitVarianceAndInverts) {
  using T = TypeParam;
  const auto x = normal_data<T>(400, {50, -0.5, 3e3}, {5, 0.01, 40}, 11);
  StandardScaler s;
  s.fit(std::span<const T>(x), 3);
  const auto z = s.transform(std::span<const T>(x));
  StandardScaler check;
  check.fit(std::span<const T>(z), 3);
  const double tol = 10 * std::numeric_limits<T>::epsilon();
  for (std::size_t f = 0; f < 3; ++f) {
    EXPECT_NEAR(check.mean()[f], 0, tol);
    EXPECT_NEAR(check.var()[f], 1, tol);
  }
  const auto back = s.inverse_transform(std::span<const T>(z));
  for (std::size_t k = 0; k < x.size(); ++k) {
    EXPECT_NEAR(back[k], x[k], 4 * std::numeric_limits<T>::epsilon() * (std::abs(x[k]) + 1));
  }
}

// A communicator of two ranks that both hold this process's rows: the synchronized fit must
// then see every row twice (same mean and variance, twice the count) through the real gather
// and rank-merge path.
class TwinCommunicator final : public Communicator {
 public:
  [[nodiscard]] int size() const override { return 2; }
  [[nodiscard]] int rank() const override { return 0; }
  void allreduce_sum(std::span<double> values) const override {
    for (double& v : values) v *= 2;
  }
  void allgather(std::span<const double> local, std::span<double> all) const override {
    std::copy(local.begin(), local.end(), all.begin());
    std::copy(local.begin(), local.end(), all.begin() + static_cast<std::ptrdiff_t>(local.size()));
  }
};

TEST(StandardScaler, SynchronizedFitOverLocalCommunicatorIsTheLocalFit) {
  auto x = normal_data<float>(300, {1, 2e4}, {3, 1}, 12);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  StandardScaler local, sync;
  local.fit(std::span<const float>(x), 2);
  sync.fit(std::span<const float>(x), 2, LocalCommunicator{});
  for (std::size_t f = 0; f < 2; ++f) {
    EXPECT_EQ(sync.mean()[f], local.mean()[f]);
    EXPECT_EQ(sync.var()[f], local.var()[f]);
    EXPECT_EQ(sync.n_samples_seen()[f], local.n_samples_seen()[f]);
  }
}

TEST(StandardScaler, SynchronizedFitMergesEveryRank) {
  const auto x = normal_data<double>(100, {1, -7}, {3, 0.2}, 13);
  StandardScaler local, sync;
  local.fit(std::span<const double>(x), 2);
  sync.fit(std::span<const double>(x), 2, TwinCommunicator{});
  for (std::size_t f = 0; f < 2; ++f) {
    EXPECT_EQ(sync.n_samples_seen()[f], 200);
    EXPECT_EQ(sync.mean()[f], local.mean()[f]);  // merging equal moments: delta = 0
    EXPECT_EQ(sync.var()[f], local.var()[f]);    // (2 M2) / (2 n)
  }
  // An empty rank is fine as long as the union is not: here both ranks are empty.
  EXPECT_TRUE(
      contains(message_of([&] { sync.fit(std::span<const double>(), 2, TwinCommunicator{}); }),
               "every rank has 0 rows"));
  // Invalid input on a rank is reported after the collective (no rank hangs).
  const std::vector<double> bad{1, kInf};
  const std::string msg =
      message_of([&] { sync.fit(std::span<const double>(bad), 2, TwinCommunicator{}); });
  EXPECT_TRUE(contains(msg, "= inf")) << msg;
  EXPECT_TRUE(contains(msg, "rank 0 of 2")) << msg;
}

TEST(StandardScaler, FromStatisticsReproducesTheFittedScaler) {
  const auto x = normal_data<double>(64, {3, 1e6, 0}, {1, 1e-9, 2}, 14);
  StandardScaler s;
  s.fit(std::span<const double>(x), 3);
  const auto r = StandardScaler::from_statistics(true, true, s.mean(), s.var(), s.n_samples_seen());
  for (std::size_t f = 0; f < 3; ++f) EXPECT_EQ(r.scale()[f], s.scale()[f]);
  EXPECT_EQ(r.transform(std::span<const double>(x)), s.transform(std::span<const double>(x)));
  // And it keeps learning: partial_fit merges into the restored moments.
  auto more = r;
  more.partial_fit(std::span<const double>(x), 3);
  EXPECT_EQ(more.n_samples_seen()[0], 128);
  EXPECT_NEAR(more.var()[0], s.var()[0], 1e-14 * s.var()[0]);
}

TEST(StandardScaler, ErrorsNameTheArgumentTheValueAndTheExpectation) {
  StandardScaler s;
  const std::vector<double> x{1, 2, 3, 4, 5, 6};
  auto fit = [&](std::span<const double> data, std::int64_t features,
                 std::span<const double> w = {}) {
    return message_of([&] { s.fit(data, features, w); });
  };
  EXPECT_TRUE(contains(fit(x, 0), "features = 0; expected > 0"));
  EXPECT_TRUE(contains(fit(x, 4), "x has 6 values; expected a multiple of features = 4"));
  EXPECT_TRUE(contains(fit({}, 2), "0 rows"));
  std::vector<double> inf = x;
  inf[3] = -kInf;
  EXPECT_TRUE(contains(fit(inf, 2), "x[row 1, feature 1] = -inf; expected finite values"));
  const std::vector<double> short_w{1, 1}, negative{1, -1, 1}, nan_w{1, kNaN, 1};
  EXPECT_TRUE(contains(fit(x, 2, short_w), "sample_weight has 2 values; expected 3"));
  EXPECT_TRUE(contains(fit(x, 2, negative), "sample_weight[1] = -1; expected a finite weight"));
  EXPECT_TRUE(contains(fit(x, 2, nan_w), "sample_weight[1] = nan"));
  EXPECT_FALSE(s.fitted());  // a failed fit changes nothing

  EXPECT_TRUE(
      contains(message_of([&] { (void)s.transform(std::span<const double>(x)); }), "not fitted"));
  s.fit(std::span<const double>(x), 2);
  const double mean0 = s.mean()[0];
  EXPECT_TRUE(contains(message_of([&] { s.partial_fit(std::span<const double>(x), 3); }),
                       "features = 3; expected 2"));
  EXPECT_TRUE(contains(message_of([&] { s.fit(std::span<const double>(inf), 2); }), "-inf"));
  EXPECT_EQ(s.mean()[0], mean0);  // still the previous fit
  // transform checks everything before writing: in place, the data is left as it was.
  std::vector<double> y = inf;
  EXPECT_TRUE(contains(message_of([&] { s.transform(std::span<const double>(y), y); }),
                       "x[row 1, feature 1] = -inf"));
  EXPECT_EQ(y, inf);
  std::vector<double> small(4);
  EXPECT_TRUE(contains(message_of([&] { s.transform(std::span<const double>(x), small); }),
                       "the output has 4 values; expected 6"));
  EXPECT_TRUE(
      contains(message_of([&] { (void)s.inverse_transform(std::span<const double>(x).first(5)); }),
               "z has 5 values; expected a multiple of n_features_in = 2"));
  EXPECT_TRUE(s.transform(std::span<const double>()).empty());  // zero rows are fine

  const std::vector<double> two{1, 2}, one{1}, counts{3, 3}, negative_count{3, -1};
  EXPECT_TRUE(contains(
      message_of([&] { (void)StandardScaler::from_statistics(true, true, two, one, counts); }),
      "var has 1 values; expected 2"));
  EXPECT_TRUE(contains(
      message_of([&] { (void)StandardScaler::from_statistics(true, false, two, two, counts); }),
      "var has 2 values; expected 0"));
  EXPECT_TRUE(contains(message_of([&] {
                         (void)StandardScaler::from_statistics(true, true, two, two,
                                                               negative_count);
                       }),
                       "n_samples_seen[1] = -1"));
}

}  // namespace
}  // namespace bnorm
