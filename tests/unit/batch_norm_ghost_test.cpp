// Ghost batch norm (virtual_batch_size, REFERENCES.md section 4): each virtual batch is plain
// batch norm on its slice of samples (bitwise), the moving statistics are updated once per step
// from the averaged virtual-batch statistics (docs/semantics.md), inference is unaffected.
#include <gtest/gtest.h>

#include <bnorm/batch_norm.hpp>
#include <cmath>

#include "layer_reference.hpp"

namespace bnorm {
namespace {

using testing::batch_stats;
using testing::random_values;
using testing::view_of;

void check_ghost_equals_plain_per_slice(BatchNormOptions o, std::vector<std::int64_t> shape,
                                        std::int64_t virtual_batch) {
  const std::int64_t C = view_of(shape, o.axis).channels;
  BatchNormOptions ghost_options = o;
  ghost_options.virtual_batch_size = virtual_batch;
  BatchNorm ghost(C, ghost_options);
  for (std::int64_t c = 0; c < C; ++c) {
    ghost.gamma()[c] = 0.5f + 0.25f * static_cast<float>(c);
    ghost.beta()[c] = 1.0f - 0.5f * static_cast<float>(c);
  }
  const auto total = static_cast<std::size_t>(view_of(shape, o.axis).size());
  const auto x = random_values<float>(total, 900, 2.0, 1.5);
  const auto dy = random_values<float>(total, 901);
  std::vector<float> y(total), dx(total);
  ghost.forward(x, shape, y, true);
  ghost.backward(x, dy, dx);

  const std::int64_t groups = shape[0] / virtual_batch;
  std::vector<std::int64_t> slice_shape = shape;
  slice_shape[0] = virtual_batch;
  const std::size_t n = total / static_cast<std::size_t>(groups);
  std::vector<double> dgamma(static_cast<std::size_t>(C), 0.0), dbeta(dgamma);
  for (std::int64_t k = 0; k < groups; ++k) {
    BatchNorm plain(C, o);
    std::copy(ghost.gamma().begin(), ghost.gamma().end(), plain.gamma().begin());
    std::copy(ghost.beta().begin(), ghost.beta().end(), plain.beta().begin());
    const auto first = static_cast<std::ptrdiff_t>(static_cast<std::size_t>(k) * n);
    const std::vector<float> xs(x.begin() + first, x.begin() + first + static_cast<long>(n));
    const std::vector<float> dys(dy.begin() + first, dy.begin() + first + static_cast<long>(n));
    std::vector<float> ys(n), dxs(n);
    plain.forward(xs, slice_shape, ys, true);
    plain.backward(xs, dys, dxs);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(y[static_cast<std::size_t>(first) + i], ys[i]) << "slice " << k << " at " << i;
      ASSERT_EQ(dx[static_cast<std::size_t>(first) + i], dxs[i]) << "slice " << k << " at " << i;
    }
    for (std::size_t c = 0; c < static_cast<std::size_t>(C); ++c) {
      dgamma[c] += static_cast<double>(plain.gamma_grad()[c]);
      dbeta[c] += static_cast<double>(plain.beta_grad()[c]);
    }
  }
  for (std::size_t c = 0; c < static_cast<std::size_t>(C); ++c) {
    EXPECT_EQ(ghost.gamma_grad()[c], static_cast<float>(dgamma[c]));
    EXPECT_EQ(ghost.beta_grad()[c], static_cast<float>(dbeta[c]));
  }
}

TEST(BatchNormGhost, EachVirtualBatchIsPlainBatchNormOnItsSlice) {
  check_ghost_equals_plain_per_slice(BatchNormOptions::keras(), {6, 5}, 2);          // (N, C)
  check_ghost_equals_plain_per_slice(BatchNormOptions::keras(), {4, 2, 3, 3}, 2);    // NHWC
  check_ghost_equals_plain_per_slice(BatchNormOptions::pytorch(), {6, 3, 4}, 3);     // NCL
  check_ghost_equals_plain_per_slice(BatchNormOptions::pytorch(), {8, 2, 2, 2}, 4);  // NCHW
}

TEST(BatchNormGhost, MovingStatisticsAreUpdatedOnceFromTheAveragedVirtualStatistics) {
  for (const auto variance : {MovingVariance::kBiased, MovingVariance::kUnbiased}) {
    BatchNormOptions o;
    o.momentum = 0.7;
    o.virtual_batch_size = 3;
    o.moving_variance = variance;
    BatchNormDouble bn(2, o);
    const std::vector<std::int64_t> shape = {9, 2, 2};  // axis -1: channels 2, 3 virtual batches
    std::vector<double> mm(2, 0.0), mv(2, 1.0);
    for (int step = 1; step <= 3; ++step) {
      // Each virtual batch drawn around its own offset, so that the between-batch spread shows.
      std::vector<double> x;
      for (int k = 0; k < 3; ++k) {
        const auto part = random_values<double>(12, 1000 + 10 * step + k, 1.0 + k, 4.0 * k);
        x.insert(x.end(), part.begin(), part.end());
      }
      std::vector<double> y(36);
      bn.forward(x, shape, y, true);
      EXPECT_EQ(bn.num_batches_tracked(), step);  // one update per step, whatever the groups
      std::vector<double> mean(2, 0.0), var(2, 0.0);
      for (int k = 0; k < 3; ++k) {
        const std::vector<double> slice(x.begin() + 12 * k, x.begin() + 12 * (k + 1));
        const auto s = batch_stats(slice, view_of({3, 2, 2}, -1));
        for (std::size_t c = 0; c < 2; ++c) {
          mean[c] += s.mean[c] / 3;
          var[c] += (variance == MovingVariance::kUnbiased ? s.var[c] * 6 / 5 : s.var[c]) / 3;
        }
      }
      for (std::size_t c = 0; c < 2; ++c) {
        mm[c] = 0.7 * mm[c] + 0.3 * mean[c];
        mv[c] = 0.7 * mv[c] + 0.3 * var[c];
        EXPECT_NEAR(bn.moving_mean()[c], mm[c], 1e-12);
        EXPECT_NEAR(bn.moving_variance()[c], mv[c], 1e-12);
      }
    }
  }
}

TEST(BatchNormGhost, InferenceIsUnaffected) {
  BatchNormOptions o;
  o.virtual_batch_size = 2;
  o.moving_mean_initializer = Initializer::constant(0.5);
  o.moving_variance_initializer = Initializer::constant(3.0);
  BatchNormOptions p = o;
  p.virtual_batch_size = 0;
  BatchNorm ghost(3, o), plain(3, p);
  const std::vector<std::int64_t> shape = {5, 3};  // 5 is not a multiple of 2: fine in inference
  const auto x = random_values<float>(15, 1100);
  std::vector<float> a(15), b(15);
  ghost.forward(x, shape, a, false);
  plain.forward(x, shape, b, false);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace bnorm
