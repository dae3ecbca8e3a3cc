// The StandardScaler in the engine: folding into Dense (Dense'(x) == Dense(scaler(x))),
// fitting on a Dataset as the model sees it, and the Trainer feeding standardized batches.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bnorm/error.hpp"
#include "bnorm/nn/loss.hpp"
#include "bnorm/nn/standard_scaler.hpp"
#include "bnorm/nn/trainer.hpp"

namespace bnorm::nn {
namespace {

namespace fs = std::filesystem;
const fs::path kTiny = fs::path(BNORM_TESTS_DIR) / "cli" / "data" / "tiny";

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

template <class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected bnorm::Error";
  return {};
}

// rows x 6 features with very different means and spreads, and one constant feature (scale 1).
template <class T>
Tensor<T> features(std::int64_t rows, unsigned seed) {
  const double means[] = {100, -3, 0, 1e3, 5, 42}, stds[] = {10, 0.01, 1, 300, 2, 0};
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> n01;
  Tensor<T> x(rows, 6);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t f = 0; f < 6; ++f) x(r, f) = static_cast<T>(means[f] + stds[f] * n01(gen));
  }
  return x;
}

template <class T>
class FoldTyped : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(FoldTyped, Types);

// Both sides compute the same affine map; they differ by the roundings of T along the way, so
// the tolerance is a few ulps of T times the size of the terms summed:
//   sum_i |x_i - m_i| / s_i |K_ij| + sum_i |m_i| / s_i |K_ij| + |b_j|.
TYPED_TEST(FoldTyped, FoldedDenseEqualsDenseOnStandardizedInputs) {
  using T = TypeParam;
  for (const bool with_mean : {true, false}) {
    for (const bool with_std : {true, false}) {
      StandardScaler scaler(with_mean, with_std);
      const Tensor<T> train = features<T>(500, 1);
      scaler.fit(std::span<const T>(train.span()), 6);
      Rng rng(2);
      Dense<T> dense(6, 4, true, {Init::Kind::kGaussian, 0.5}, rng);
      for (std::int64_t j = 0; j < 4; ++j)
        dense.bias()(0, j) = static_cast<T>(0.25 * static_cast<double>(j - 1));
      Dense<T> folded = dense;
      fold_standard_scaler(scaler, folded);

      const Tensor<T> x = features<T>(32, 3);
      Tensor<T> z(32, 6), y_std, y_folded;
      scaler.transform(std::span<const T>(x.span()), z.span());
      dense.forward(z, y_std, Mode::kInference);
      folded.forward(x, y_folded, Mode::kInference);
      const double eps = std::numeric_limits<T>::epsilon();
      for (std::int64_t r = 0; r < 32; ++r) {
        for (std::int64_t j = 0; j < 4; ++j) {
          double size = std::abs(static_cast<double>(dense.bias()(0, j)));
          for (std::int64_t i = 0; i < 6; ++i) {
            const double m = with_mean ? scaler.mean()[static_cast<std::size_t>(i)] : 0.0;
            const double s = with_std ? scaler.scale()[static_cast<std::size_t>(i)] : 1.0;
            size += (std::abs(static_cast<double>(x(r, i)) - m) + std::abs(m)) / s *
                    std::abs(static_cast<double>(dense.kernel()(i, j)));
          }
          EXPECT_NEAR(y_folded(r, j), y_std(r, j), 16 * eps * size)
              << "with_mean " << with_mean << " with_std " << with_std << " row " << r;
        }
      }
    }
  }
}

TEST(NnStandardScaler, FoldWithoutCenteringNeedsNoBias) {
  StandardScaler scale_only(false, true);
  const Tensor<double> train = features<double>(100, 4);
  scale_only.fit(std::span<const double>(train.span()), 6);
  Rng rng(5);
  Dense<double> dense(6, 3, false, {Init::Kind::kGaussian, 1.0}, rng);
  const double k00 = dense.kernel()(0, 0);
  fold_standard_scaler(scale_only, dense);
  EXPECT_EQ(dense.kernel()(0, 0), k00 / scale_only.scale()[0]);
}

TEST(NnStandardScaler, FoldErrorsLeaveTheLayerUnchanged) {
  Rng rng(6);
  Dense<float> no_bias(6, 3, false, {Init::Kind::kGaussian, 1.0}, rng);
  Dense<float> seven(7, 3, true, {Init::Kind::kGaussian, 1.0}, rng);
  const std::vector<float> before(no_bias.kernel().span().begin(), no_bias.kernel().span().end());
  StandardScaler scaler;
  EXPECT_TRUE(contains(message_of([&] { fold_standard_scaler(scaler, no_bias); }), "not fitted"));
  const Tensor<float> train = features<float>(50, 7);
  scaler.fit(std::span<const float>(train.span()), 6);
  EXPECT_TRUE(contains(message_of([&] { fold_standard_scaler(scaler, no_bias); }),
                       "the Dense layer has no bias; expected one"));
  EXPECT_TRUE(contains(message_of([&] { fold_standard_scaler(scaler, seven); }),
                       "the Dense layer has 7 inputs; expected 6"));
  // A feature that never saw a sample has no statistics to fold.
  Tensor<float> with_empty = train;
  for (std::int64_t r = 0; r < with_empty.rows(); ++r) {
    with_empty(r, 2) = std::numeric_limits<float>::quiet_NaN();
  }
  StandardScaler partial;
  partial.fit(std::span<const float>(with_empty.span()), 6);
  Dense<float> dense(6, 3, true, {Init::Kind::kGaussian, 1.0}, rng);
  EXPECT_TRUE(contains(message_of([&] { fold_standard_scaler(partial, dense); }),
                       "feature 2 has mean nan"));
  const std::vector<float> after(no_bias.kernel().span().begin(), no_bias.kernel().span().end());
  EXPECT_EQ(before, after);
}

// fit_standard_scaler partial_fits chunks of kScalerFitRows images: the result equals one fit of
// all gathered images (to rounding: different merge trees) and the images standardize to mean
// 0 and variance 1 per pixel.
TEST(NnStandardScaler, FitOnADatasetIsTheFitOfItsGatheredImages) {
  Dataset data;
  data.name = "synthetic";
  data.images.count = kScalerFitRows + 904;  // two chunks, the second partial
  data.images.rows = 2;
  data.images.cols = 3;
  std::mt19937_64 gen(8);
  for (std::int64_t k = 0; k < data.images.count * 6; ++k) {
    // Pixel 0 always 0 (constant), the others with different ranges.
    const auto p = k % 6;
    const auto bound = 40 * static_cast<std::uint64_t>(p) + 16;  // up to 216 < 256
    data.images.pixels.push_back(static_cast<std::uint8_t>(p == 0 ? 0 : gen() % bound));
  }
  data.labels.assign(static_cast<std::size_t>(data.images.count), 0);
  const StandardScaler chunked = fit_standard_scaler(data);

  std::vector<std::int64_t> all(static_cast<std::size_t>(data.size()));
  std::iota(all.begin(), all.end(), 0);
  Tensor<float> x;
  std::vector<std::int32_t> labels;
  gather(data, all, x, labels);
  StandardScaler whole;
  whole.fit(std::span<const float>(x.span()), 6);
  for (std::size_t f = 0; f < 6; ++f) {
    EXPECT_EQ(chunked.n_samples_seen()[f], static_cast<double>(data.size()));
    EXPECT_NEAR(chunked.mean()[f], whole.mean()[f], 1e-15);
    EXPECT_NEAR(chunked.var()[f], whole.var()[f], 1e-14 * whole.var()[f]);
  }
  EXPECT_EQ(chunked.scale()[0], 1);
  const std::vector<float> z = chunked.transform(std::span<const float>(x.span()));
  StandardScaler check;
  check.fit(std::span<const float>(z), 6);
  for (std::size_t f = 1; f < 6; ++f) {
    EXPECT_NEAR(check.mean()[f], 0, 1e-6);
    EXPECT_NEAR(check.var()[f], 1, 1e-5);
  }
  Dataset empty;
  EXPECT_TRUE(contains(message_of([&] { (void)fit_standard_scaler(empty); }), "0 images"));
}

TrainConfig small_config() {
  TrainConfig c;
  c.model.hidden = {32, 16};
  c.sgd = {0.2, 0.0, 0.0, {}};
  c.batch = 24;
  c.seed = 9;
  return c;
}

// The Trainer evaluates the model on scaler.transform(images): its loss equals the model's loss
// on batches standardized by hand. An identity scaler (neither flag) changes nothing, bitwise.
TEST(NnStandardScaler, TrainerFeedsStandardizedBatches) {
  const Dataset train = load_idx_dataset(kTiny, "train");
  const Dataset test = load_idx_dataset(kTiny, "t10k");
  const LocalCommunicator comm;
  auto scaler = std::make_shared<const StandardScaler>(fit_standard_scaler(train));
  TrainConfig config = small_config();
  config.input_scaler = scaler;
  Trainer standardized(config, train, comm);
  for (int i = 0; i < 5; ++i) (void)standardized.step();
  const Evaluation e = standardized.evaluate(test, 0, 0);

  std::vector<std::int64_t> all(static_cast<std::size_t>(test.size()));
  std::iota(all.begin(), all.end(), 0);
  Tensor<float> x;
  std::vector<std::int32_t> labels;
  gather(test, all, x, labels);
  scaler->transform(std::span<const float>(x.span()), x.span());
  const Tensor<float>& logits = standardized.model().net.forward(x, Mode::kInference);
  // evaluate sums the per-example losses of its chunks (one chunk here) and divides by n.
  EXPECT_EQ(e.loss, softmax_cross_entropy<float>(logits, labels, 1, nullptr) /
                        static_cast<double>(test.size()));

  // Folding the scaler into the first Dense gives the same logits on raw images.
  std::vector<float> expected(logits.span().begin(), logits.span().end());
  auto* first = dynamic_cast<Dense<float>*>(&standardized.model().net.layer(0));
  ASSERT_NE(first, nullptr);
  fold_standard_scaler(*scaler, *first);
  gather(test, all, x, labels);
  const Tensor<float>& raw_logits = standardized.model().net.forward(x, Mode::kInference);
  for (std::size_t k = 0; k < expected.size(); ++k) {
    EXPECT_NEAR(raw_logits.span()[k], expected[k], 1e-4 * (1 + std::abs(expected[k])));
  }

  TrainConfig identity_config = small_config();
  identity_config.input_scaler = std::make_shared<const StandardScaler>(
      StandardScaler(false, false).fit(std::span<const float>(x.span()), x.cols()));
  Trainer plain(small_config(), train, comm), identity(identity_config, train, comm);
  Trainer standardized_again(config, train, comm);
  bool differs = false;
  for (int i = 0; i < 5; ++i) {
    const double loss = plain.step();
    EXPECT_EQ(identity.step(), loss);
    differs = differs || standardized_again.step() != loss;
  }
  EXPECT_TRUE(differs);
}

}  // namespace
}  // namespace bnorm::nn
