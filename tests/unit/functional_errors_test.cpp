// Every error a caller can make in the functional API, with its message; and the edge cases that
// are not errors (empty batches).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "bnorm/error.hpp"
#include "bnorm/functional.hpp"
#include "bnorm/phases.hpp"
#include "support/support.hpp"

namespace bnorm {
namespace {

using test::message_of;

using ::testing::AllOf;
using ::testing::HasSubstr;

struct Buffers {
  Geometry g{2, 3, 4};
  std::vector<float> x = std::vector<float>(24, 1.0f), y = std::vector<float>(24),
                     dy = std::vector<float>(24, 1.0f), dx = std::vector<float>(24);
  std::vector<float> gamma = std::vector<float>(3, 1.0f), beta = std::vector<float>(3, 0.0f),
                     mean = std::vector<float>(3), var = std::vector<float>(3, 1.0f),
                     dgamma = std::vector<float>(3), dbeta = std::vector<float>(3);
};

TEST(FunctionalErrors, WrongTensorSize) {
  Buffers b;
  std::vector<float> short_x(23);
  EXPECT_THAT(message_of([&] {
                forward_training(short_x, b.y, b.g, b.gamma, b.beta, 1e-5f, b.mean, b.var);
              }),
              AllOf(HasSubstr("forward_training"), HasSubstr("x has 23 values"),
                    HasSubstr("expected outer*channels*inner = 24")));
  std::vector<float> long_y(25);
  EXPECT_THAT(message_of([&] {
                forward_inference(b.x, long_y, b.g, b.gamma, b.beta, b.mean, b.var, 1e-5f);
              }),
              AllOf(HasSubstr("forward_inference"), HasSubstr("y has 25 values")));
  EXPECT_THAT(message_of([&] {
                backward(b.x, short_x, b.g, b.gamma, b.mean, b.var, 1e-5f, b.dx, b.dgamma, b.dbeta);
              }),
              AllOf(HasSubstr("backward"), HasSubstr("dy has 23 values")));
  EXPECT_THAT(message_of([&] {
                backward(b.x, b.dy, b.g, b.gamma, b.mean, b.var, 1e-5f, short_x, b.dgamma, b.dbeta);
              }),
              HasSubstr("dx has 23 values"));
}

TEST(FunctionalErrors, WrongChannelSpanSize) {
  Buffers b;
  std::vector<float> two(2);
  EXPECT_THAT(
      message_of([&] { forward_training(b.x, b.y, b.g, two, b.beta, 1e-5f, b.mean, b.var); }),
      AllOf(HasSubstr("gamma has 2 values"), HasSubstr("expected 3 or 0")));
  EXPECT_THAT(
      message_of([&] { forward_training(b.x, b.y, b.g, b.gamma, two, 1e-5f, b.mean, b.var); }),
      HasSubstr("beta has 2 values"));
  EXPECT_THAT(
      message_of([&] { forward_training(b.x, b.y, b.g, b.gamma, b.beta, 1e-5f, two, b.var); }),
      AllOf(HasSubstr("batch_mean has 2 values"), HasSubstr("expected 3 (one per channel)")));
  EXPECT_THAT(
      message_of([&] { forward_training(b.x, b.y, b.g, b.gamma, b.beta, 1e-5f, b.mean, two); }),
      HasSubstr("batch_variance has 2 values"));
  EXPECT_THAT(
      message_of([&] { forward_inference(b.x, b.y, b.g, b.gamma, b.beta, two, b.var, 1e-5f); }),
      HasSubstr("mean has 2 values"));
  EXPECT_THAT(
      message_of([&] { forward_inference(b.x, b.y, b.g, b.gamma, b.beta, b.mean, two, 1e-5f); }),
      HasSubstr("variance has 2 values"));
  EXPECT_THAT(message_of([&] {
                backward(b.x, b.dy, b.g, b.gamma, b.mean, b.var, 1e-5f, b.dx, two, b.dbeta);
              }),
              HasSubstr("dgamma has 2 values"));
  EXPECT_THAT(message_of([&] {
                backward(b.x, b.dy, b.g, b.gamma, b.mean, b.var, 1e-5f, b.dx, b.dgamma, two);
              }),
              HasSubstr("dbeta has 2 values"));
}

TEST(FunctionalErrors, ZeroChannels) {
  Buffers b;
  const Geometry g{2, 0, 4};
  std::vector<float> none;
  EXPECT_THAT(message_of([&] { forward_training(none, none, g, none, none, 1e-5f, none, none); }),
              AllOf(HasSubstr("channels = 0"), HasSubstr("expected channels >= 1")));
}

TEST(FunctionalErrors, NegativeOrNanEpsilon) {
  Buffers b;
  EXPECT_THAT(
      message_of([&] { forward_training(b.x, b.y, b.g, b.gamma, b.beta, -1e-5f, b.mean, b.var); }),
      AllOf(HasSubstr("epsilon = -1e-05"), HasSubstr("expected a finite number >= 0")));
  EXPECT_THAT(message_of([&] {
                forward_inference(b.x, b.y, b.g, b.gamma, b.beta, b.mean, b.var,
                                  std::numeric_limits<float>::quiet_NaN());
              }),
              HasSubstr("epsilon = nan"));
  EXPECT_THAT(message_of([&] {
                backward(b.x, b.dy, b.g, b.gamma, b.mean, b.var,
                         std::numeric_limits<float>::infinity(), b.dx, b.dgamma, b.dbeta);
              }),
              HasSubstr("epsilon = inf"));
}

TEST(FunctionalErrors, OneValuePerChannelInTraining) {
  const Geometry g{1, 3, 1};
  std::vector<float> x(3, 2.0f), y(3), mean(3), var(3);
  EXPECT_THAT(message_of([&] { forward_training(x, y, g, {}, {}, 1e-5f, mean, var); }),
              AllOf(HasSubstr("Expected more than 1 value per channel when training, got 1"),
                    HasSubstr("outer*inner >= 2")));
  std::vector<float> dx(3);
  EXPECT_THAT(message_of([&] { backward(x, x, g, {}, mean, var, 1e-5f, dx, {}, {}); }),
              HasSubstr("Expected more than 1 value per channel"));
  // Inference with one value per channel is fine.
  std::vector<float> ones(3, 1.0f);
  forward_inference(x, y, g, {}, {}, mean, ones, 0.0f);
  EXPECT_EQ(y[0], 2.0f);
}

TEST(FunctionalErrors, BadGeometryExtents) {
  std::vector<float> none;
  EXPECT_THAT(message_of([&] {
                forward_training(none, none, Geometry{-1, 2, 1}, none, none, 1e-5f, none, none);
              }),
              HasSubstr("negative extent"));
}

TEST(FunctionalErrors, PhasesCheckTheirArguments) {
  Buffers b;
  std::vector<Moments> two(2);
  EXPECT_THAT(message_of([&] { channel_moments(std::span<const float>(b.x), b.g, two); }),
              AllOf(HasSubstr("channel_moments"), HasSubstr("moments has 2 values")));
  std::vector<Moments> per_rank(5);
  std::vector<Moments> merged(3);
  EXPECT_THAT(message_of([&] { merge_ranks(per_rank, 2, merged); }),
              AllOf(HasSubstr("merge_ranks"), HasSubstr("per_rank has 5 entries")));
  std::vector<double> sums(3, 0.0);
  EXPECT_THAT(message_of([&] {
                backward_input(std::span<const float>(b.x), b.dy, b.g, b.gamma, b.mean, b.var, 1e-5,
                               sums, sums, 0.0, b.dx);
              }),
              AllOf(HasSubstr("backward_input"), HasSubstr("count = 0")));
}

TEST(EmptyBatch, TrainingGivesZeroStatisticsAndGradients) {
  for (const Geometry g : {Geometry{0, 3, 5}, Geometry{4, 3, 0}, Geometry{0, 3, 1}}) {
    std::vector<float> x, y, dy, dx;
    std::vector<float> mean(3, 7.0f), var(3, 7.0f), dgamma(3, 7.0f), dbeta(3, 7.0f);
    forward_training(x, y, g, {}, {}, 1e-5f, mean, var);
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(mean[c], 0.0f);
      EXPECT_EQ(var[c], 0.0f);
    }
    backward(x, dy, g, {}, mean, var, 1e-5f, dx, dgamma, dbeta);
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(dgamma[c], 0.0f);
      EXPECT_EQ(dbeta[c], 0.0f);
    }
  }
}

TEST(EmptyBatch, DoubleToo) {
  const Geometry g{0, 2, 3};
  std::vector<double> x, y, dx;
  std::vector<double> mean(2, 7.0), var(2, 7.0), dgamma(2, 7.0), dbeta(2, 7.0);
  forward_training(x, y, g, {}, {}, 1e-5, mean, var);
  backward(x, x, g, {}, mean, var, 1e-5, dx, dgamma, dbeta);
  EXPECT_EQ(mean, std::vector<double>(2, 0.0));
  EXPECT_EQ(var, std::vector<double>(2, 0.0));
  EXPECT_EQ(dgamma, std::vector<double>(2, 0.0));
  EXPECT_EQ(dbeta, std::vector<double>(2, 0.0));
}

}  // namespace
}  // namespace bnorm
