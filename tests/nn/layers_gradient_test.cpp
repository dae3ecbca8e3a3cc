// Gradient checks of every layer and of whole networks by central finite differences (double).
#include <gtest/gtest.h>

#include <vector>

#include "bnorm/nn/activations.hpp"
#include "bnorm/nn/batch_norm_layer.hpp"
#include "bnorm/nn/dense.hpp"
#include "bnorm/nn/loss.hpp"
#include "bnorm/nn/mlp.hpp"
#include "gradcheck.hpp"

namespace bnorm::nn {
namespace {

using testing::dot;
using testing::expect_gradient;
using testing::random_tensor;

// Checks dx and every parameter gradient of `layer` for f = sum(r * layer(x)).
void check_layer(Layer<double>& layer, Tensor<double> x, Rng& rng, double tol = 1e-7) {
  Tensor<double> y;
  layer.forward(x, y, Mode::kTraining);
  const Tensor<double> r = random_tensor(y.rows(), y.cols(), rng);
  Tensor<double> dx(x.rows(), x.cols());
  dx.fill(123.0);  // outputs are assigned, never accumulated: junk must not survive
  for (auto& p : layer.parameters()) std::fill(p.grad.begin(), p.grad.end(), 456.0);
  layer.backward(r, &dx);
  // Copies: the analytic gradients, before the finite differences call forward again.
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

TEST(NnGradient, DenseWithAndWithoutBias) {
  Rng rng(1);
  for (bool bias : {true, false}) {
    Dense<double> dense(7, 5, bias, {Init::Kind::kGaussian, 0.5}, rng);
    if (bias) {
      for (double& b : dense.bias().span()) b = rng.normal();
    }
    check_layer(dense, random_tensor(6, 7, rng), rng);
  }
}

TEST(NnGradient, Activations) {
  Rng rng(2);
  for (auto kind : {ActivationKind::kSigmoid, ActivationKind::kTanh, ActivationKind::kRelu}) {
    Activation<double> act(kind, 9);
    Tensor<double> x = random_tensor(5, 9, rng);
    // Keep relu inputs away from the kink, where the derivative is not defined, and mostly
    // positive so that most of dx is not trivially zero.
    for (double& v : x.span()) {
      if (kind == ActivationKind::kRelu) v += 1.0;
      v += v > 0 ? 0.1 : -0.1;
    }
    check_layer(act, x, rng);
  }
}

TEST(NnGradient, BatchNormTraining) {
  Rng rng(3);
  BatchNormLayer<double> bn(6, {});
  for (double& g : bn.gamma()) g = 0.5 + rng.uniform();
  for (double& b : bn.beta()) b = rng.normal();
  check_layer(bn, random_tensor(8, 6, rng, 2.0, 3.0), rng, 1e-6);
}

TEST(NnGradient, BatchNormVirtualBatches) {
  Rng rng(4);
  BatchNormLayerOptions o;
  o.virtual_batch = 4;
  BatchNormLayer<double> bn(5, o);
  for (double& g : bn.gamma()) g = 0.5 + rng.uniform();
  check_layer(bn, random_tensor(12, 5, rng, 1.5, -1.0), rng, 1e-6);
}

TEST(NnGradient, BatchRenormWithClippedCorrection) {
  // r and d are constants for the gradient (stop_gradient). With the renorm statistics (against
  // which r and d are taken, as in tf.keras) far from the batch's, both sit at their clip bounds,
  // so they are constant in a neighbourhood of x too and finite differences see exactly the
  // function backward differentiates. momentum 1 keeps those statistics fixed across the repeated
  // forwards.
  Rng rng(5);
  BatchNormLayerOptions o;
  o.renorm = true;
  o.renorm_rmax = 1.5;
  o.renorm_dmax = 0.5;
  o.momentum = 1.0;
  BatchNormLayer<double> bn(4, o);
  for (double& v : bn.layer().renorm_stddev()) v = 0.1;  // sigma_B / renorm_stddev >> rmax
  for (std::size_t j = 0; j < 4; ++j) bn.layer().renorm_mean()[j] = j % 2 == 0 ? 50.0 : -50.0;
  for (double& g : bn.gamma()) g = 0.5 + rng.uniform();
  for (double& b : bn.beta()) b = rng.normal();
  check_layer(bn, random_tensor(10, 4, rng, 2.0), rng, 1e-6);
}

TEST(NnGradient, SoftmaxCrossEntropy) {
  Rng rng(6);
  Tensor<double> logits = random_tensor(7, 4, rng, 2.0);
  const std::vector<std::int32_t> labels{0, 3, 1, 2, 2, 0, 3};
  Tensor<double> dlogits;
  softmax_cross_entropy(logits, labels, 11, &dlogits);
  const std::vector<double> analytic(dlogits.span().begin(), dlogits.span().end());
  expect_gradient("dlogits", logits.span(), analytic,
                  [&] { return softmax_cross_entropy<double>(logits, labels, 11, nullptr); });
}

// The whole network: loss(MLP(x)) with every placement of BN; every parameter's gradient.
class NnNetworkGradient : public ::testing::TestWithParam<BnPlacement> {};

TEST_P(NnNetworkGradient, EveryParameter) {
  Rng rng(7);
  MlpSpec spec;
  spec.inputs = 10;
  spec.hidden = {6, 5};
  spec.classes = 4;
  spec.bn = GetParam();
  spec.init = {Init::Kind::kGaussian, 0.7};
  Mlp<double> mlp = build_mlp<double>(spec, rng);
  // Non-trivial BN parameters so that no gradient path is an identity.
  for (auto& p : mlp.net.parameters()) {
    for (double& v : p.value) v += 0.3 * rng.normal();
  }
  const Tensor<double> x = random_tensor(9, 10, rng);
  std::vector<std::int32_t> labels(9);
  for (auto& l : labels) l = static_cast<std::int32_t>(rng.below(4));
  Tensor<double> dlogits;
  softmax_cross_entropy(mlp.net.forward(x, Mode::kTraining), labels, 9, &dlogits);
  mlp.net.backward(dlogits);
  auto params = mlp.net.parameters();
  std::vector<std::vector<double>> grads;
  for (auto& p : params) grads.emplace_back(p.grad.begin(), p.grad.end());
  auto loss = [&] {
    return softmax_cross_entropy<double>(mlp.net.forward(x, Mode::kTraining), labels, 9, nullptr);
  };
  for (std::size_t k = 0; k < params.size(); ++k) {
    expect_gradient(params[k].name, params[k].value, grads[k], loss, 1e-6);
  }
}

INSTANTIATE_TEST_SUITE_P(Placements, NnNetworkGradient,
                         ::testing::Values(BnPlacement::kNone, BnPlacement::kBefore,
                                           BnPlacement::kAfter),
                         [](const auto& p) { return std::string(bn_placement_name(p.param)); });

}  // namespace
}  // namespace bnorm::nn
