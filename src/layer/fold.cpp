// Folding inference batch norm into the preceding linear layer (REFERENCES.md section 1):
//   y = a * (W x + bias - mean) + beta = (a W) x + (a * (bias - mean) + beta),
//   a = gamma / sqrt(moving_var + eps),
// with W's rows (Dense) or first dimension (Conv) indexing the output channels. Computed in
// double and rounded once per element.
#include <fmt/format.h>

#include <cmath>

#include "bnorm/batch_norm.hpp"
#include "bnorm/error.hpp"

namespace bnorm {

template <class T>
void BasicBatchNorm<T>::fold_into(std::span<T> weights, std::span<T> bias) const {
  const auto C = static_cast<std::size_t>(channels_);
  if (!options_.track_running_stats) {
    throw Error(
        "BatchNorm::fold_into: track_running_stats = false; expected moving statistics "
        "(a layer that always uses batch statistics is not an affine map)");
  }
  if (weights.empty() || weights.size() % C != 0) {
    throw Error(
        fmt::format("BatchNorm::fold_into: weights has {} values; expected a non-zero "
                    "multiple of channels = {} (rows or first dimension = output channels)",
                    weights.size(), C));
  }
  if (bias.size() != C) {
    throw Error(
        fmt::format("BatchNorm::fold_into: bias has {} values; expected {} (one per output "
                    "channel)",
                    bias.size(), C));
  }
  const std::size_t row = weights.size() / C;
  for (std::size_t c = 0; c < C; ++c) {
    const double gamma = gamma_.empty() ? 1.0 : static_cast<double>(gamma_[c]);
    const double beta = beta_.empty() ? 0.0 : static_cast<double>(beta_[c]);
    const double a = gamma / std::sqrt(static_cast<double>(moving_variance_[c]) + options_.epsilon);
    for (std::size_t i = 0; i < row; ++i) {
      weights[c * row + i] = static_cast<T>(a * static_cast<double>(weights[c * row + i]));
    }
    bias[c] = static_cast<T>(
        a * (static_cast<double>(bias[c]) - static_cast<double>(moving_mean_[c])) + beta);
  }
}

template void BasicBatchNorm<float>::fold_into(std::span<float>, std::span<float>) const;
template void BasicBatchNorm<double>::fold_into(std::span<double>, std::span<double>) const;

}  // namespace bnorm
