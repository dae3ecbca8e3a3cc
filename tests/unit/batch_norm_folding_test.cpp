// Folding inference batch norm into a preceding Dense or Conv: the folded layer's output is
// within 4 ulp of the double-precision result of Dense/Conv followed by batch norm, and so is
// the unfolded float pipeline. The data is positive (weights, inputs, shifts) so that the
// products do not cancel and an ulp of the result is a meaningful yardstick.
#include <gtest/gtest.h>

#include <bnorm/batch_norm.hpp>
#include <bnorm/error.hpp>
#include <cmath>
#include <random>

namespace bnorm {
namespace {

float ulp(double v) {
  const float f = std::abs(static_cast<float>(v));
  return std::nextafter(f, INFINITY) - f;
}

std::vector<float> positive(std::size_t n, std::uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& e : v) e = dist(gen);
  return v;
}

BatchNorm trained_layer(std::int64_t C, int axis) {
  BatchNormOptions o;
  o.axis = axis;
  BatchNorm bn(C, o);
  const auto gamma = positive(static_cast<std::size_t>(C), 1, 0.5f, 2.0f);
  const auto beta = positive(static_cast<std::size_t>(C), 2, 0.5f, 1.0f);
  const auto mean = positive(static_cast<std::size_t>(C), 3, -2.0f, -0.5f);
  const auto var = positive(static_cast<std::size_t>(C), 4, 0.5f, 4.0f);
  std::copy(gamma.begin(), gamma.end(), bn.gamma().begin());
  std::copy(beta.begin(), beta.end(), bn.beta().begin());
  std::copy(mean.begin(), mean.end(), bn.moving_mean().begin());
  std::copy(var.begin(), var.end(), bn.moving_variance().begin());
  return bn;
}

// BN of a double pre-activation, with the layer's float parameters.
double bn_double(const BatchNorm& bn, std::size_t c, double z) {
  return static_cast<double>(bn.gamma()[c]) * (z - static_cast<double>(bn.moving_mean()[c])) /
             std::sqrt(static_cast<double>(bn.moving_variance()[c]) + bn.options().epsilon) +
         static_cast<double>(bn.beta()[c]);
}

TEST(BatchNormFolding, DenseThenBatchNormWithin4Ulp) {
  const std::int64_t N = 5, K = 7, C = 4;
  BatchNorm bn = trained_layer(C, -1);
  const auto W = positive(C * K, 5, 0.1f, 1.0f);  // [C][K]
  const auto bias = positive(C, 6, 0.0f, 0.5f);
  const auto x = positive(N * K, 7, 0.0f, 2.0f);  // [N][K]
  // Dense: z[n][c] = sum_k W[c][k] x[n][k] + bias[c], accumulated in double, rounded once.
  const auto dense = [&](const std::vector<float>& w, const std::vector<float>& b, bool round) {
    std::vector<double> z(N * C);
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t c = 0; c < C; ++c) {
        double s = b[c];
        for (std::int64_t k = 0; k < K; ++k) s += double{w[c * K + k]} * double{x[n * K + k]};
        z[n * C + c] = round ? static_cast<float>(s) : s;
      }
    return z;
  };
  const auto z_double = dense(W, bias, false);
  const auto zd = dense(W, bias, true);
  std::vector<float> z(zd.begin(), zd.end()), y(N * C);
  const std::int64_t shape[] = {N, C};
  bn.forward(z, shape, y, false);
  std::vector<float> Wf = W, bf = bias;
  bn.fold_into(Wf, bf);
  const auto folded = dense(Wf, bf, true);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t c = 0; c < C; ++c) {
      const auto i = static_cast<std::size_t>(n * C + c);
      const double expected = bn_double(bn, static_cast<std::size_t>(c), z_double[i]);
      EXPECT_LE(std::abs(folded[i] - expected), 4 * ulp(expected)) << n << "," << c;
      EXPECT_LE(std::abs(y[i] - expected), 4 * ulp(expected)) << n << "," << c;
    }
}

TEST(BatchNormFolding, ConvThenBatchNormWithin4Ulp) {
  // Conv2d NCHW, 3x3 kernel, no padding: [N=2][Cin=2][5][5] -> [N][C=3][3][3].
  const std::int64_t N = 2, Cin = 2, H = 5, C = 3, R = 3, Ho = H - R + 1;
  BatchNorm bn = trained_layer(C, 1);
  const auto W = positive(C * Cin * R * R, 8, 0.05f, 0.5f);  // [C][Cin][R][R]
  const auto bias = positive(C, 9, 0.0f, 0.5f);
  const auto x = positive(N * Cin * H * H, 10, 0.0f, 1.0f);
  const auto conv = [&](const std::vector<float>& w, const std::vector<float>& b, bool round) {
    std::vector<double> z(N * C * Ho * Ho);
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t i = 0; i < Ho; ++i)
          for (std::int64_t j = 0; j < Ho; ++j) {
            double s = b[c];
            for (std::int64_t ci = 0; ci < Cin; ++ci)
              for (std::int64_t u = 0; u < R; ++u)
                for (std::int64_t v = 0; v < R; ++v) {
                  s += double{w[((c * Cin + ci) * R + u) * R + v]} *
                       double{x[((n * Cin + ci) * H + i + u) * H + j + v]};
                }
            z[((n * C + c) * Ho + i) * Ho + j] = round ? static_cast<float>(s) : s;
          }
    return z;
  };
  const auto z_double = conv(W, bias, false);
  const auto zd = conv(W, bias, true);
  std::vector<float> z(zd.begin(), zd.end()), y(z.size());
  const std::int64_t shape[] = {N, C, Ho, Ho};
  bn.forward(z, shape, y, false);
  std::vector<float> Wf = W, bf = bias;
  bn.fold_into(Wf, bf);
  const auto folded = conv(Wf, bf, true);
  for (std::size_t i = 0; i < z.size(); ++i) {
    const auto c = static_cast<std::size_t>((static_cast<std::int64_t>(i) / (Ho * Ho)) % C);
    const double expected = bn_double(bn, c, z_double[i]);
    EXPECT_LE(std::abs(folded[i] - expected), 4 * ulp(expected)) << i;
    EXPECT_LE(std::abs(y[i] - expected), 4 * ulp(expected)) << i;
  }
}

TEST(BatchNormFolding, RejectsMismatchedShapesAndMissingStatistics) {
  BatchNorm bn(3);
  std::vector<float> w(7), b(3), b2(2);
  try {
    bn.fold_into(w, b);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("weights has 7 values"), std::string::npos) << e.what();
  }
  w.resize(6);
  try {
    bn.fold_into(w, b2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bias has 2 values; expected 3"), std::string::npos)
        << e.what();
  }
  BatchNormOptions o;
  o.track_running_stats = false;
  BatchNorm no_stats(3, o);
  try {
    no_stats.fold_into(w, b);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("track_running_stats = false"), std::string::npos);
  }
}

}  // namespace
}  // namespace bnorm
