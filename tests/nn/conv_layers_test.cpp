// The convolutional layers (Conv2d, MaxPool2d, Flatten, Dropout, ELU, BN over NHWC): finite
// differences in double, a direct-loop convolution as the plain twin of im2col + GEMM, bitwise
// equality across thread counts, and the documented edge cases (ties, NaN, masks).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>

#include "bnorm/nn/activations.hpp"
#include "bnorm/nn/arch.hpp"
#include "bnorm/nn/batch_norm_layer.hpp"
#include "bnorm/nn/conv2d.hpp"
#include "bnorm/nn/dropout.hpp"
#include "bnorm/nn/loss.hpp"
#include "bnorm/nn/max_pool2d.hpp"
#include "bnorm/nn/mlp.hpp"
#include "gradcheck.hpp"

namespace bnorm::nn {
namespace {

using testing::dot;
using testing::expect_gradient;
using testing::random_tensor;

Tensor<double> random_maps(std::int64_t n, const FeatureMap& m, Rng& rng, double scale = 1.0) {
  Tensor<double> t({n, m.height, m.width, m.channels});
  for (double& v : t.span()) v = scale * rng.normal();
  return t;
}

// dx and every parameter gradient of `layer` for f = sum(r * layer(x)) by central differences.
void check_layer(Layer<double>& layer, Tensor<double> x, Rng& rng, double tol = 1e-7) {
  Tensor<double> y;
  layer.forward(x, y, Mode::kTraining);
  const Tensor<double> r = random_tensor(y.rows(), y.cols(), rng);
  Tensor<double> dx;
  dx.resize(x.shape());
  dx.fill(123.0);  // assigned, never accumulated: junk must not survive
  for (auto& p : layer.parameters()) std::fill(p.grad.begin(), p.grad.end(), 456.0);
  layer.backward(r, &dx);
  ASSERT_EQ(dx.shape(), x.shape()) << layer.kind();
  const std::vector<double> dx_analytic(dx.span().begin(), dx.span().end());
  std::vector<std::vector<double>> grads;
  for (auto& p : layer.parameters()) grads.emplace_back(p.grad.begin(), p.grad.end());
  Tensor<double> out;
  auto f = [&] {
    layer.forward(x, out, Mode::kTraining);
    return dot(r, out);
  };
  expect_gradient(layer.kind() + " dx", x.span(), dx_analytic, f, tol);
  auto params = layer.parameters();
  for (std::size_t k = 0; k < params.size(); ++k) {
    expect_gradient(layer.kind() + " d" + params[k].name, params[k].value, grads[k], f, tol);
  }
}

struct ConvCase {
  FeatureMap in;
  Conv2dOptions options;
};

const std::vector<ConvCase> kConvCases = {
    {{5, 6, 3}, {4, 3, 1, -1, true}},  // 3x3 "same"
    {{7, 6, 2}, {3, 5, 2, 2, true}},   // 5x5, stride 2, padding 2
    {{7, 7, 3}, {5, 3, 2, 0, false}},  // 3x3, stride 2, no padding, no bias
    {{4, 5, 1}, {2, 5, 1, -1, true}},  // 5x5 "same" over one input channel
    {{6, 5, 2}, {3, 3, 3, 1, true}},   // stride 3
};

TEST(NnConv2d, GradientsByFiniteDifferences) {
  Rng rng(11);
  for (const auto& c : kConvCases) {
    Conv2d<double> conv(c.in, c.options, {Init::Kind::kGaussian, 0.5}, rng);
    for (double& b : conv.bias().span()) b = rng.normal();
    check_layer(conv, random_maps(3, c.in, rng), rng);
  }
}

// The plain twin: y[n, oh, ow, co] by the definition, in long double.
template <class T>
std::vector<long double> direct_convolution(const Tensor<T>& x, const FeatureMap& in,
                                            Conv2d<T>& conv, std::int64_t k, std::int64_t s,
                                            std::int64_t pad) {
  const FeatureMap out = conv.out_shape();
  std::vector<long double> y(static_cast<std::size_t>(x.rows() * out.size()));
  const bool bias = conv.bias().size() > 0;
  for (std::int64_t n = 0; n < x.rows(); ++n) {
    for (std::int64_t oh = 0; oh < out.height; ++oh) {
      for (std::int64_t ow = 0; ow < out.width; ++ow) {
        for (std::int64_t co = 0; co < out.channels; ++co) {
          long double acc = bias ? conv.bias().data()[co] : 0;
          for (std::int64_t i = 0; i < k; ++i) {
            for (std::int64_t j = 0; j < k; ++j) {
              const std::int64_t h = oh * s + i - pad, w = ow * s + j - pad;
              if (h < 0 || h >= in.height || w < 0 || w >= in.width) continue;
              for (std::int64_t ci = 0; ci < in.channels; ++ci) {
                acc += static_cast<long double>(
                           x.data()[n * in.size() + (h * in.width + w) * in.channels + ci]) *
                       conv.kernel().data()[((i * k + j) * in.channels + ci) * out.channels + co];
              }
            }
          }
          y[static_cast<std::size_t>(n * out.size() + (oh * out.width + ow) * out.channels + co)] =
              acc;
        }
      }
    }
  }
  return y;
}

template <class T>
void check_against_direct(double tol) {
  Rng rng(12);
  for (const auto& c : kConvCases) {
    Conv2d<T> conv(c.in, c.options, {Init::Kind::kGlorotUniform, 0}, rng);
    for (T& b : conv.bias().span()) b = static_cast<T>(rng.normal());
    Tensor<T> x({5, c.in.height, c.in.width, c.in.channels}), y;
    for (T& v : x.span()) v = static_cast<T>(rng.normal());
    conv.forward(x, y, Mode::kInference);
    const std::int64_t pad = c.options.padding < 0 ? c.options.kernel / 2 : c.options.padding;
    const auto want = direct_convolution(x, c.in, conv, c.options.kernel, c.options.stride, pad);
    ASSERT_EQ(static_cast<std::size_t>(y.size()), want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(static_cast<double>(y.data()[i]), static_cast<double>(want[i]),
                  tol * (1 + std::abs(static_cast<double>(want[i]))))
          << "element " << i;
    }
  }
}

TEST(NnConv2d, MatchesTheDirectConvolutionFloat) {
  check_against_direct<float>(2e-6);
}
TEST(NnConv2d, MatchesTheDirectConvolutionDouble) {
  check_against_direct<double>(1e-13);
}

// Forward output, dx and every gradient for `threads` OpenMP threads.
std::vector<float> conv_results(int threads) {
  omp_set_num_threads(threads);
  Rng rng(13);
  const FeatureMap in{9, 8, 5};
  Conv2d<float> conv(in, {6, 3, 1, -1, true}, {Init::Kind::kGlorotUniform, 0}, rng);
  Tensor<float> x({7, in.height, in.width, in.channels}), y, dx;
  for (float& v : x.span()) v = static_cast<float>(rng.normal());
  conv.forward(x, y, Mode::kTraining);
  Tensor<float> dy;
  dy.resize(y.shape());
  for (float& v : dy.span()) v = static_cast<float>(rng.normal());
  conv.backward(dy, &dx);
  std::vector<float> all(y.span().begin(), y.span().end());
  all.insert(all.end(), dx.span().begin(), dx.span().end());
  for (auto& p : conv.parameters()) all.insert(all.end(), p.grad.begin(), p.grad.end());
  return all;
}

TEST(NnConv2d, BitwiseIdenticalForAnyThreadCount) {
  const int saved = omp_get_max_threads();
  const std::vector<float> one = conv_results(1);
  for (int threads : {2, 3, 4}) {
    const std::vector<float> many = conv_results(threads);
    ASSERT_EQ(one.size(), many.size());
    EXPECT_EQ(0, std::memcmp(one.data(), many.data(), one.size() * sizeof(float)))
        << threads << " threads";
  }
  omp_set_num_threads(saved);
}

TEST(NnConv2d, RejectsBadShapesNamingTheField) {
  Rng rng(14);
  EXPECT_THROW(Conv2d<float>({5, 5, 1}, {0, 3, 1, -1, true}, {}, rng), Error);
  EXPECT_THROW(Conv2d<float>({5, 5, 1}, {4, 0, 1, -1, true}, {}, rng), Error);
  EXPECT_THROW(Conv2d<float>({5, 5, 1}, {4, 3, 0, -1, true}, {}, rng), Error);
  EXPECT_THROW(Conv2d<float>({2, 2, 1}, {4, 5, 1, 0, true}, {}, rng), Error);
  Conv2d<float> conv({5, 5, 2}, {4, 3, 1, -1, true}, {}, rng);
  Tensor<float> x(3, 49), y;
  try {
    conv.forward(x, y, Mode::kTraining);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected 50"), std::string::npos) << e.what();
  }
}

TEST(NnMaxPool2d, GradientsByFiniteDifferences) {
  Rng rng(15);
  // Distinct values (no ties within h of each other): the max is differentiable there.
  for (auto [size, stride] : {std::pair<std::int64_t, std::int64_t>{2, 2}, {3, 2}, {2, 1}}) {
    const FeatureMap in{6, 7, 3};
    MaxPool2d<double> pool(in, size, stride);
    Tensor<double> x = random_maps(2, in, rng);
    Tensor<double> y;
    pool.forward(x, y, Mode::kTraining);
    const Tensor<double> r = random_tensor(y.rows(), y.cols(), rng);
    Tensor<double> dx;
    pool.backward(r, &dx);
    Tensor<double> out;
    for (std::int64_t i = 0; i < x.size(); ++i) {
      const double saved = x.data()[i];
      const double h = 1e-6;
      x.data()[i] = saved + h;
      pool.forward(x, out, Mode::kInference);
      const double up = dot(r, out);
      x.data()[i] = saved - h;
      pool.forward(x, out, Mode::kInference);
      const double down = dot(r, out);
      x.data()[i] = saved;
      EXPECT_NEAR((up - down) / (2 * h), dx.data()[i], 1e-7)
          << "size " << size << " x[" << i << "]";
    }
    // Every window routes its gradient somewhere: the sums agree.
    double sum_dx = 0, sum_r = 0;
    for (double v : dx.span()) sum_dx += v;
    for (double v : r.span()) sum_r += v;
    EXPECT_NEAR(sum_dx, sum_r, 1e-12);
  }
}

TEST(NnMaxPool2d, TiesGoToTheFirstAndNanPropagates) {
  const FeatureMap in{2, 4, 2};
  MaxPool2d<float> pool(in);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // Channel 0: window 0 all equal (tie -> first, index 0); window 1 has a NaN at its last
  // position. Channel 1: window 0 has a NaN first; window 1 a max at (1, 3).
  Tensor<float> x({1, 2, 4, 2});
  const float values[2][4][2] = {{{5, nan}, {5, 1}, {0, 2}, {1, 3}},
                                 {{5, 4}, {5, 9}, {2, 0}, {nan, 7}}};
  for (int h = 0; h < 2; ++h)
    for (int w = 0; w < 4; ++w)
      for (int c = 0; c < 2; ++c) x.data()[(h * 4 + w) * 2 + c] = values[h][w][c];
  Tensor<float> y;
  pool.forward(x, y, Mode::kTraining);
  ASSERT_EQ(y.size(), 4);
  EXPECT_EQ(y.data()[0], 5.0f);
  EXPECT_EQ(pool.argmax()[0], 0);  // (0, 0, c0): the first of four 5s
  EXPECT_TRUE(std::isnan(y.data()[1]));
  EXPECT_EQ(pool.argmax()[1], 1);  // (0, 0, c1)
  EXPECT_TRUE(std::isnan(y.data()[2]));
  EXPECT_EQ(pool.argmax()[2], (1 * 4 + 3) * 2 + 0);  // the NaN at (1, 3, c0)
  EXPECT_EQ(y.data()[3], 7.0f);
  EXPECT_EQ(pool.argmax()[3], (1 * 4 + 3) * 2 + 1);
  Tensor<float> dy({1, 1, 2, 2}), dx;
  dy.fill(1.0f);
  pool.backward(dy, &dx);
  EXPECT_EQ(dx.data()[0], 1.0f);
  EXPECT_EQ(dx.data()[2], 0.0f);  // the tied 5 at (0, 1) gets nothing
}

TEST(NnFlatten, IsTheIdentityOnValues) {
  Rng rng(16);
  Flatten<double> flatten(2 * 3 * 4);
  Tensor<double> x = random_maps(3, {2, 3, 4}, rng), y, dx;
  flatten.forward(x, y, Mode::kTraining);
  EXPECT_EQ(y.shape(), (std::vector<std::int64_t>{3, 24}));
  flatten.backward(y, &dx);
  EXPECT_EQ(dx.shape(), x.shape());
  EXPECT_EQ(0, std::memcmp(dx.data(), x.data(), static_cast<std::size_t>(x.size()) * 8));
}

TEST(NnDropout, GradientIsTheMask) {
  Rng rng(17);
  Dropout<double> dropout(0.2, 40, 99, 3);
  dropout.begin_step(5, 0);
  check_layer(dropout, random_tensor(6, 40, rng), rng);
}

TEST(NnDropout, MaskIsAFunctionOfSeedStreamStepExampleFeature) {
  Rng rng(18);
  const Tensor<float> x = [&] {
    Tensor<float> t(10, 33);
    for (float& v : t.span()) v = static_cast<float>(rng.normal());
    return t;
  }();
  Dropout<float> whole(0.5, 33, 7, 2);
  whole.begin_step(41, 100);
  Tensor<float> y_whole;
  whole.forward(x, y_whole, Mode::kTraining);
  // The same batch split over two "ranks" (rows 0-3 and 4-9 at their global offsets), with
  // fresh layers (as after a resume): the same outputs, bit for bit.
  Tensor<float> top(4, 33), bottom(6, 33), y_top, y_bottom;
  std::copy(x.data(), x.data() + 4 * 33, top.data());
  std::copy(x.data() + 4 * 33, x.data() + 10 * 33, bottom.data());
  Dropout<float> a(0.5, 33, 7, 2), b(0.5, 33, 7, 2);
  a.begin_step(41, 100);
  b.begin_step(41, 104);
  a.forward(top, y_top, Mode::kTraining);
  b.forward(bottom, y_bottom, Mode::kTraining);
  EXPECT_EQ(0, std::memcmp(y_top.data(), y_whole.data(), 4 * 33 * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(y_bottom.data(), y_whole.data() + 4 * 33, 6 * 33 * sizeof(float)));
  // Another step, stream or seed draws another mask.
  for (auto [seed, stream, step] :
       {std::tuple<std::uint64_t, std::uint64_t, std::int64_t>{7, 2, 42}, {7, 3, 41}, {8, 2, 41}}) {
    Dropout<float> other(0.5, 33, seed, stream);
    other.begin_step(step, 100);
    Tensor<float> y_other;
    other.forward(x, y_other, Mode::kTraining);
    EXPECT_NE(0, std::memcmp(y_other.data(), y_whole.data(), 10 * 33 * sizeof(float)));
  }
  // Inference is the identity.
  Tensor<float> y_inference;
  whole.forward(x, y_inference, Mode::kInference);
  EXPECT_EQ(0, std::memcmp(y_inference.data(), x.data(), 10 * 33 * sizeof(float)));
}

TEST(NnDropout, KeepsOneMinusRateAndScalesToKeepTheMean) {
  for (double rate : {0.2, 0.5}) {
    Dropout<double> dropout(rate, 1000, 5, 0);
    std::int64_t kept = 0, total = 0;
    for (std::int64_t step = 0; step < 20; ++step) {
      for (std::int64_t example = 0; example < 10; ++example) {
        for (std::int64_t f = 0; f < 1000; ++f) {
          const double m = dropout.multiplier(step, example, f);
          ASSERT_TRUE(m == 0.0 || m == 1.0 / (1.0 - rate));
          kept += m > 0 ? 1 : 0;
          ++total;
        }
      }
    }
    // 200,000 Bernoulli draws: the standard error of the fraction is ~0.0011.
    EXPECT_NEAR(static_cast<double>(kept) / static_cast<double>(total), 1 - rate, 0.006);
  }
  EXPECT_THROW(Dropout<float>(1.0, 4, 0, 0), Error);
  EXPECT_THROW(Dropout<float>(-0.1, 4, 0, 0), Error);
}

TEST(NnElu, GradientAndValues) {
  Rng rng(19);
  Activation<double> elu(ActivationKind::kElu, 12);
  check_layer(elu, random_tensor(5, 12, rng, 2.0), rng);
  Tensor<double> x(1, 12), y;
  x.fill(-1.0);
  x.data()[0] = 2.0;
  elu.forward(x, y, Mode::kInference);
  EXPECT_DOUBLE_EQ(y.data()[0], 2.0);
  EXPECT_DOUBLE_EQ(y.data()[1], std::expm1(-1.0));
  EXPECT_EQ(parse_activation("elu"), ActivationKind::kElu);
}

// BN over NHWC maps: statistics per channel over N*H*W (checked against the definition), and
// the gradients with and without scale & bias.
TEST(NnBatchNormSpatial, PerChannelStatisticsAndGradients) {
  Rng rng(20);
  const FeatureMap m{3, 4, 5};
  for (bool affine : {true, false}) {
    BatchNormLayerOptions o;
    o.center = affine;
    o.scale = affine;
    o.epsilon = 1e-5;
    BatchNormLayer<double> bn(m.channels, o, m.positions());
    EXPECT_EQ(bn.parameters().size(), affine ? 2U : 0U);
    EXPECT_EQ(bn.out_features(), m.size());
    for (double& g : bn.gamma()) g = 0.5 + rng.uniform();
    for (double& b : bn.beta()) b = rng.normal();
    Tensor<double> x = random_maps(4, m, rng, 2.0), y;
    bn.forward(x, y, Mode::kTraining);
    EXPECT_EQ(y.shape(), x.shape());
    for (std::int64_t c = 0; c < m.channels; ++c) {
      long double sum = 0, sq = 0;
      const std::int64_t count = x.rows() * m.positions();
      for (std::int64_t i = 0; i < count; ++i) sum += x.data()[i * m.channels + c];
      const long double mean = sum / count;
      for (std::int64_t i = 0; i < count; ++i) {
        const long double d = x.data()[i * m.channels + c] - mean;
        sq += d * d;
      }
      const long double inv = 1.0L / std::sqrt(sq / count + 1e-5L);
      const double g = affine ? bn.gamma()[static_cast<std::size_t>(c)] : 1.0;
      const double b = affine ? bn.beta()[static_cast<std::size_t>(c)] : 0.0;
      for (std::int64_t i = 0; i < count; ++i) {
        const double want =
            static_cast<double>(g * (x.data()[i * m.channels + c] - mean) * inv + b);
        EXPECT_NEAR(y.data()[i * m.channels + c], want, 1e-12);
      }
    }
    check_layer(bn, x, rng, 1e-6);
  }
}

TEST(NnArch, ParsesAndFormats) {
  const auto arch = parse_arch("c16,c16k5s2,p,p3s1,c32,p,f128");
  ASSERT_EQ(arch.size(), 7U);
  EXPECT_EQ(arch[1], (LayerSpec{LayerSpec::Kind::kConv, 16, 5, 2}));
  EXPECT_EQ(arch[2], (LayerSpec{LayerSpec::Kind::kPool, 0, 2, 2}));
  EXPECT_EQ(arch[3], (LayerSpec{LayerSpec::Kind::kPool, 0, 3, 1}));
  EXPECT_EQ(arch[6], (LayerSpec{LayerSpec::Kind::kDense, 128, 0, 0}));
  EXPECT_EQ(format_arch(arch), "c16,c16k5s2,p,p3s1,c32,p,f128");
  for (const char* bad :
       {"", "c", "c0", "x3", "c16,", ",f8", "f8k3", "p0", "c16k", "c99999999", "c16s2k3", "f-1"}) {
    try {
      (void)parse_arch(bad);
      FAIL() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("expected a comma-separated list"), std::string::npos)
          << e.what();
    }
  }
}

// The whole CNN: loss(CNN(x)) for every BN placement, with and without scale & bias and with
// dropout; every parameter's gradient.
class NnCnnGradient : public ::testing::TestWithParam<std::tuple<BnPlacement, bool>> {};

TEST_P(NnCnnGradient, EveryParameter) {
  Rng rng(21);
  MlpSpec spec;
  spec.image = {6, 6, 2};
  spec.inputs = spec.image.size();
  spec.arch = parse_arch("c3,p,c4,f5");
  spec.classes = 4;
  spec.bn = std::get<0>(GetParam());
  spec.bn_options.center = spec.bn_options.scale = std::get<1>(GetParam());
  spec.activation = ActivationKind::kElu;
  spec.dropout = 0.25;
  spec.init = {Init::Kind::kGaussian, 0.7};
  Mlp<double> cnn = build_mlp<double>(spec, rng);
  for (auto& p : cnn.net.parameters()) {
    for (double& v : p.value) v += 0.3 * rng.normal();
  }
  const std::int64_t n = 8;
  Tensor<double> x = random_tensor(n, spec.inputs, rng);
  std::vector<std::int32_t> labels(static_cast<std::size_t>(n));
  for (auto& l : labels) l = static_cast<std::int32_t>(rng.below(4));
  cnn.net.begin_step(3, 0);
  Tensor<double> dlogits;
  softmax_cross_entropy(cnn.net.forward(x, Mode::kTraining), labels, n, &dlogits);
  cnn.net.backward(dlogits);
  auto params = cnn.net.parameters();
  std::vector<std::vector<double>> grads;
  for (auto& p : params) grads.emplace_back(p.grad.begin(), p.grad.end());
  auto loss = [&] {
    return softmax_cross_entropy<double>(cnn.net.forward(x, Mode::kTraining), labels, n, nullptr);
  };
  for (std::size_t k = 0; k < params.size(); ++k) {
    expect_gradient(params[k].name, params[k].value, grads[k], loss, 1e-6);
  }
}

INSTANTIATE_TEST_SUITE_P(Placements, NnCnnGradient,
                         ::testing::Combine(::testing::Values(BnPlacement::kNone,
                                                              BnPlacement::kBefore,
                                                              BnPlacement::kAfter),
                                            ::testing::Bool()),
                         [](const auto& p) {
                           return std::string(bn_placement_name(std::get<0>(p.param))) +
                                  (std::get<1>(p.param) ? "_scale_bias" : "_plain");
                         });

}  // namespace
}  // namespace bnorm::nn
