// The README's layer example: a BatchNorm layer with PyTorch's conventions trained for a few
// steps, saved, loaded into a fresh layer and run in inference mode.
#include <bnorm/bnorm.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

int main() {
  // NCHW activations: 8 images, 4 channels, 6x6 pixels. The PyTorch preset normalizes axis 1.
  const std::vector<std::int64_t> shape = {8, 4, 6, 6};
  bnorm::BatchNorm bn(/*channels=*/4, bnorm::BatchNormOptions::pytorch(/*momentum=*/0.1));

  std::vector<float> x(8 * 4 * 6 * 6), y(x.size()), dy(x.size()), dx(x.size());
  for (int step = 0; step < 5; ++step) {
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = 3.0f * std::sin(0.37f * i + step) + 2.0f;
    for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = std::cos(0.11f * i);
    bn.forward(x, shape, y, /*training=*/true);  // batch statistics; running stats updated
    bn.backward(x, dy, dx);                      // dx, gamma_grad(), beta_grad()
    for (int c = 0; c < 4; ++c) {                // plain SGD on gamma and beta
      bn.gamma()[c] -= 0.1f * bn.gamma_grad()[c];
      bn.beta()[c] -= 0.1f * bn.beta_grad()[c];
    }
  }

  // Safetensors state (atomic write); a Keras-convention layer would refuse this file.
  const auto path = std::filesystem::temp_directory_path() / "bnorm_example_layer.safetensors";
  bn.save(path);
  bnorm::BatchNorm restored(4, bnorm::BatchNormOptions::pytorch(0.1));
  restored.load(path);  // also reads PyTorch state_dict names: weight, bias, running_mean, ...

  std::vector<float> y_restored(x.size());
  bn.forward(x, shape, y, /*training=*/false);  // inference: running statistics, no update
  restored.forward(x, shape, y_restored, /*training=*/false);
  std::filesystem::remove(path);

  std::printf("running_mean[0] %.4f, running_var[0] %.4f, batches %lld, y[0] %.4f\n",
              bn.moving_mean()[0], bn.moving_variance()[0],
              static_cast<long long>(bn.num_batches_tracked()), y[0]);
  return y == y_restored && bn.num_batches_tracked() == 5 ? 0 : 1;
}
