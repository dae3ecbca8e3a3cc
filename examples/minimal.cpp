// The README's usage example: batch-normalize an NCHW tensor, then back-propagate.
#include <bnorm/bnorm.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  // A batch of 4 images with 3 channels of 5x5 pixels, laid out NCHW; channel axis 1.
  const std::int64_t shape[] = {4, 3, 5, 5};
  const bnorm::Geometry g = bnorm::geometry_of(shape, /*axis=*/1);

  std::vector<float> x(g.size()), y(g.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1f * i) * 3 + 1;
  std::vector<float> gamma(g.channels, 1.0f), beta(g.channels, 0.0f);
  std::vector<float> mean(g.channels), variance(g.channels);

  // Training forward: normalize with the batch statistics, which are returned.
  bnorm::forward_training(x, y, g, gamma, beta, /*epsilon=*/1e-5f, mean, variance);

  // Backward: gradients of the input, gamma and beta for an upstream gradient dy.
  std::vector<float> dy(g.size(), 0.5f), dx(g.size()), dgamma(g.channels), dbeta(g.channels);
  bnorm::backward(x, dy, g, gamma, mean, variance, 1e-5f, dx, dgamma, dbeta);

  // Inference with the statistics (a layer would keep moving averages instead).
  bnorm::forward_inference(x, y, g, gamma, beta, mean, variance, 1e-5f);

  std::printf("channel 0: mean %.4f, variance %.4f, y[0] %.4f, dbeta %.1f\n", mean[0], variance[0],
              y[0], dbeta[0]);
  return std::isfinite(y[0]) && dbeta[0] == 0.5f * 100 ? 0 : 1;
}
