// Uses the installed training engine and library together: a small CNN with batch norm takes
// SGD steps on a separable toy problem, and the functional API normalizes its logits.
#include <bnorm/bnorm.hpp>
#include <bnorm/nn/nn.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  namespace nn = bnorm::nn;
  nn::MlpSpec spec;
  spec.image = {6, 6, 1};
  spec.inputs = 36;
  spec.arch = nn::parse_arch("c4,p,f8");
  spec.classes = 2;
  spec.activation = nn::ActivationKind::kRelu;
  spec.bn = nn::BnPlacement::kBefore;
  spec.init = {nn::Init::Kind::kGlorotUniform, 0};
  nn::Rng rng(1);
  nn::Mlp<float> cnn = nn::build_mlp<float>(spec, rng);
  auto params = cnn.net.parameters();
  nn::Sgd<float> sgd({0.1, 0.9, 0, {}}, params);
  // Class 1: a bright left half; class 0: a bright right half.
  nn::Tensor<float> x({8, 6, 6, 1}), dlogits;
  std::vector<std::int32_t> labels(8);
  for (int n = 0; n < 8; ++n) {
    labels[static_cast<std::size_t>(n)] = n % 2;
    for (int i = 0; i < 36; ++i) {
      const bool left = i % 6 < 3;
      x.data()[n * 36 + i] = (left == (n % 2 == 1) ? 1.0f : 0.0f) + 0.1f * float(rng.normal());
    }
  }
  double first = 0, loss = 0;
  for (int step = 0; step < 30; ++step) {
    cnn.net.begin_step(step, 0);
    loss = nn::softmax_cross_entropy(cnn.net.forward(x, nn::Mode::kTraining), labels, 8, &dlogits);
    if (step == 0) first = loss;
    cnn.net.backward(dlogits);
    sgd.step();
  }
  const nn::Tensor<float>& logits = cnn.net.forward(x, nn::Mode::kInference);
  const std::int64_t correct = nn::count_correct(logits, labels);
  std::vector<float> y(16), mean(2), variance(2);
  const std::int64_t shape[] = {8, 2};
  bnorm::forward_training(logits.span(), y, bnorm::geometry_of(shape, 1), {}, {}, 0.0f, mean,
                          variance);
  std::printf("loss %.4f -> %.4f, %lld/8 correct, logit means %g %g\n", first, loss,
              static_cast<long long>(correct), mean[0], mean[1]);
  return loss < first && correct == 8 && std::isfinite(mean[0]) ? 0 : 1;
}
