// Virtual batch layouts: kStrided is tf.keras's ghost batch assignment (it reshapes the batch to
// [V, N/V, ...] and reduces over the first axis, so flat sample i = a*(N/V) + j belongs to
// virtual batch j = i mod (N/V)). Checked against a long double reference that builds each
// virtual batch from that reshape, against plain layers on the gathered samples (outputs and
// gradients bitwise), and the docs/semantics.md worked example.
#include <gtest/gtest.h>

#include <bnorm/batch_norm.hpp>
#include <cmath>
#include <vector>

#include "layer_reference.hpp"

namespace bnorm {
namespace {

using testing::random_values;

struct Case {
  std::vector<std::int64_t> shape;  // [N, ...]
  int axis;
  std::int64_t virtual_batch;
};

// Index helpers for a row-major [N][rest] tensor with the channel on `axis`.
std::int64_t channel_of(std::size_t flat, const std::vector<std::int64_t>& shape, int axis) {
  const auto rank = static_cast<int>(shape.size());
  const int a = axis < 0 ? axis + rank : axis;
  std::int64_t inner = 1;
  for (int d = a + 1; d < rank; ++d) inner *= shape[static_cast<std::size_t>(d)];
  return static_cast<std::int64_t>(flat) / inner % shape[static_cast<std::size_t>(a)];
}

TEST(GhostLayout, StridedIsTfKerasAssignmentAgainstALongDoubleReference) {
  for (const Case& tc : {Case{{8, 3, 5}, 1, 2}, Case{{12, 2, 3, 4}, -1, 4}, Case{{6, 4}, 1, 3}}) {
    const auto N = tc.shape[0];
    const std::int64_t G = N / tc.virtual_batch;
    auto options = BatchNormOptions::keras();
    options.axis = tc.axis;
    options.virtual_batch_size = tc.virtual_batch;
    options.virtual_batch_layout = VirtualBatchLayout::kStrided;
    std::int64_t total = 1;
    for (auto d : tc.shape) total *= d;
    const auto rank = static_cast<int>(tc.shape.size());
    const auto C = tc.shape[static_cast<std::size_t>(tc.axis < 0 ? tc.axis + rank : tc.axis)];
    BatchNorm bn(C, options);
    for (std::int64_t c = 0; c < C; ++c) {
      bn.gamma()[c] = 0.75f + 0.5f * static_cast<float>(c);
      bn.beta()[c] = -0.25f * static_cast<float>(c);
    }
    const auto x = random_values<float>(static_cast<std::size_t>(total), 70, 2.0, 3.0);
    std::vector<float> y(x.size());
    bn.forward(x, tc.shape, y, true);

    // Reference: tf.keras's reshape of the N samples to [V][G]: sample i -> virtual batch i % G.
    const auto S = static_cast<std::size_t>(total / N);
    const auto group_of = [&](std::size_t flat) { return static_cast<std::int64_t>(flat / S) % G; };
    std::vector<long double> sum(static_cast<std::size_t>(G * C), 0), count(sum), m2(sum);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const auto k = static_cast<std::size_t>(group_of(i) * C + channel_of(i, tc.shape, tc.axis));
      sum[k] += x[i];
      count[k] += 1;
    }
    for (std::size_t i = 0; i < x.size(); ++i) {
      const auto k = static_cast<std::size_t>(group_of(i) * C + channel_of(i, tc.shape, tc.axis));
      const long double d = x[i] - sum[k] / count[k];
      m2[k] += d * d;
    }
    for (std::size_t i = 0; i < x.size(); ++i) {
      const auto c = static_cast<std::size_t>(channel_of(i, tc.shape, tc.axis));
      const auto k = static_cast<std::size_t>(group_of(i)) * static_cast<std::size_t>(C) + c;
      const long double mean = sum[k] / count[k], var = m2[k] / count[k];
      const long double expected =
          bn.gamma()[c] * (x[i] - mean) / std::sqrt(var + 1e-3L) + bn.beta()[c];
      const auto e = static_cast<double>(expected);
      ASSERT_NEAR(y[i], e, 2e-6 * (1 + std::abs(e))) << "value " << i;
    }
    // Moving statistics (Keras, momentum 0.99): one update from the averaged virtual batches.
    for (std::size_t c = 0; c < static_cast<std::size_t>(C); ++c) {
      long double mean = 0, var = 0;
      for (std::size_t k = 0; k < static_cast<std::size_t>(G); ++k) {
        const std::size_t s = k * static_cast<std::size_t>(C) + c;
        mean += sum[s] / count[s];
        var += m2[s] / count[s];
      }
      mean /= static_cast<long double>(G);
      var /= static_cast<long double>(G);
      EXPECT_NEAR(bn.moving_mean()[c], static_cast<double>(0.01L * mean), 1e-6) << c;
      EXPECT_NEAR(bn.moving_variance()[c], static_cast<double>(0.99L + 0.01L * var), 1e-6) << c;
    }
  }
}

// Each strided virtual batch is exactly a plain layer on its gathered samples: outputs, input
// gradients and the summed parameter gradients.
TEST(GhostLayout, StridedVirtualBatchEqualsPlainLayerOnItsSamples) {
  const std::vector<std::int64_t> shape = {6, 3, 4};
  const std::int64_t V = 2, G = 3, C = 3;
  const std::size_t S = 12;
  auto options = BatchNormOptions::pytorch();
  options.virtual_batch_size = V;
  options.virtual_batch_layout = VirtualBatchLayout::kStrided;
  BatchNorm ghost(C, options);
  ghost.gamma()[1] = 1.5f;
  ghost.beta()[2] = -0.5f;
  const auto x = random_values<float>(72, 80, 1.5, -2.0);
  const auto dy = random_values<float>(72, 81);
  std::vector<float> y(72), dx(72);
  ghost.forward(x, shape, y, true);
  ghost.backward(x, dy, dx);
  std::vector<double> dgamma(C, 0.0);
  for (std::int64_t j = 0; j < G; ++j) {
    std::vector<float> xs, dys;
    for (std::int64_t a = 0; a < V; ++a) {
      const auto first = static_cast<std::ptrdiff_t>(static_cast<std::size_t>(a * G + j) * S);
      xs.insert(xs.end(), x.begin() + first, x.begin() + first + static_cast<std::ptrdiff_t>(S));
      dys.insert(dys.end(), dy.begin() + first,
                 dy.begin() + first + static_cast<std::ptrdiff_t>(S));
    }
    BatchNorm plain(C, BatchNormOptions::pytorch());
    std::copy(ghost.gamma().begin(), ghost.gamma().end(), plain.gamma().begin());
    std::copy(ghost.beta().begin(), ghost.beta().end(), plain.beta().begin());
    std::vector<float> ys(xs.size()), dxs(xs.size());
    const std::int64_t slice[] = {V, C, 4};
    plain.forward(xs, slice, ys, true);
    plain.backward(xs, dys, dxs);
    for (std::int64_t a = 0; a < V; ++a) {
      for (std::size_t v = 0; v < S; ++v) {
        const std::size_t at = static_cast<std::size_t>(a * G + j) * S + v;
        const std::size_t in = static_cast<std::size_t>(a) * S + v;
        ASSERT_EQ(y[at], ys[in]) << j << " " << a << " " << v;
        ASSERT_EQ(dx[at], dxs[in]) << j << " " << a << " " << v;
      }
    }
    for (std::size_t c = 0; c < 3; ++c) dgamma[c] += static_cast<double>(plain.gamma_grad()[c]);
  }
  for (std::size_t c = 0; c < 3; ++c) {
    EXPECT_NEAR(ghost.gamma_grad()[c], dgamma[c], 1e-5 * (1 + std::abs(dgamma[c])));
  }
  // The layouts really differ on this batch; update_statistics follows the layout too.
  auto contiguous_options = options;
  contiguous_options.virtual_batch_layout = VirtualBatchLayout::kContiguous;
  BatchNorm contiguous(C, contiguous_options), updated(C, options);
  std::vector<float> yc(72);
  contiguous.forward(x, shape, yc, true);
  EXPECT_NE(yc, y);
  updated.update_statistics(x, shape);
  EXPECT_EQ(std::vector<float>(updated.moving_variance().begin(), updated.moving_variance().end()),
            std::vector<float>(ghost.moving_variance().begin(), ghost.moving_variance().end()));
  EXPECT_NE(contiguous.moving_variance()[0], ghost.moving_variance()[0]);
}

// docs/semantics.md: x = [1, 2, 3, 6], V = 2, Keras defaults. Strided virtual batches [1, 3] and
// [2, 6] (contiguous: [1, 2] and [3, 6]).
TEST(GhostLayout, WorkedExample) {
  auto options = BatchNormOptions::keras();
  options.virtual_batch_size = 2;
  options.virtual_batch_layout = VirtualBatchLayout::kStrided;
  BatchNormDouble bn(1, options);
  const std::vector<double> x = {1, 2, 3, 6};
  const std::int64_t shape[] = {4, 1};
  std::vector<double> y(4);
  bn.forward(x, shape, y, true);
  EXPECT_NEAR(y[0], -1 / std::sqrt(1.001), 1e-12);  // (1 - 2) / sqrt(1 + eps)
  EXPECT_NEAR(y[2], 1 / std::sqrt(1.001), 1e-12);
  EXPECT_NEAR(y[1], -2 / std::sqrt(4.001), 1e-12);  // (2 - 4) / sqrt(4 + eps)
  EXPECT_NEAR(y[3], 2 / std::sqrt(4.001), 1e-12);
  EXPECT_NEAR(bn.moving_mean()[0], 0.03, 1e-15);       // 0.01 * (2 + 4) / 2
  EXPECT_NEAR(bn.moving_variance()[0], 1.015, 1e-15);  // 0.99 + 0.01 * (1 + 4) / 2
  // Inference ignores virtual batches in either layout.
  bn.forward(x, shape, y, false);
  EXPECT_NEAR(y[3], (6 - 0.03) / std::sqrt(1.015 + 1e-3), 1e-12);
}

}  // namespace
}  // namespace bnorm
