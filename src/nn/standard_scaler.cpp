// fit_standard_scaler and fold_standard_scaler: the scaler in the training engine.
#include "bnorm/nn/standard_scaler.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "bnorm/error.hpp"
#include "bnorm/nn/batcher.hpp"

namespace bnorm::nn {

StandardScaler fit_standard_scaler(const Dataset& data, bool with_mean, bool with_std) {
  if (data.size() <= 0 || data.features() <= 0) {
    throw Error(
        fmt::format("fit_standard_scaler: dataset '{}' has {} images of {} pixels; "
                    "expected at least one image",
                    data.name, data.size(), data.features()));
  }
  StandardScaler scaler(with_mean, with_std);
  std::vector<std::int64_t> indices;
  std::vector<std::int32_t> labels;
  Tensor<float> x;
  for (std::int64_t begin = 0; begin < data.size(); begin += kScalerFitRows) {
    const std::int64_t end = std::min(data.size(), begin + kScalerFitRows);
    indices.resize(static_cast<std::size_t>(end - begin));
    std::iota(indices.begin(), indices.end(), begin);
    gather(data, indices, x, labels);
    scaler.partial_fit(std::span<const float>(x.span()), data.features());
  }
  return scaler;
}

template <class T>
void fold_standard_scaler(const StandardScaler& scaler, Dense<T>& dense) {
  constexpr std::string_view fn = "fold_standard_scaler";
  if (!scaler.fitted()) throw Error(fmt::format("{}: the scaler is not fitted; expected fit", fn));
  const std::int64_t in = dense.in_features(), out = dense.out_features();
  if (in != scaler.n_features_in()) {
    throw Error(
        fmt::format("{}: the Dense layer has {} inputs; expected {} (the scaler's "
                    "n_features_in)",
                    fn, in, scaler.n_features_in()));
  }
  const auto features = static_cast<std::size_t>(in);
  std::vector<double> shift(features, 0.0), scale(features, 1.0);
  bool shifts = false;
  for (std::size_t i = 0; i < features; ++i) {
    if (scaler.with_mean()) shift[i] = scaler.mean()[i];
    if (scaler.with_std()) scale[i] = scaler.scale()[i];
    if (!std::isfinite(shift[i]) || !std::isfinite(scale[i])) {
      throw Error(
          fmt::format("{}: feature {} has mean {} and scale {} (n_samples_seen {}); "
                      "expected statistics from at least one sample",
                      fn, i, shift[i], scale[i], scaler.n_samples_seen()[i]));
    }
    shifts = shifts || shift[i] != 0;
  }
  Tensor<T>& kernel = dense.kernel();
  Tensor<T>& bias = dense.bias();
  if (shifts && bias.span().empty()) {
    throw Error(
        fmt::format("{}: the Dense layer has no bias; expected one to absorb the "
                    "scaler's mean (or a scaler with with_mean = false)",
                    fn));
  }
  std::vector<double> new_bias(static_cast<std::size_t>(out), 0.0);
  for (std::int64_t j = 0; j < out && !bias.span().empty(); ++j) {
    new_bias[static_cast<std::size_t>(j)] = static_cast<double>(bias(0, j));
  }
  for (std::int64_t i = 0; i < in; ++i) {
    const auto f = static_cast<std::size_t>(i);
    for (std::int64_t j = 0; j < out; ++j) {
      const double k = static_cast<double>(kernel(i, j)) / scale[f];
      new_bias[static_cast<std::size_t>(j)] -= shift[f] * k;
      kernel(i, j) = static_cast<T>(k);
    }
  }
  if (!bias.span().empty()) {
    for (std::int64_t j = 0; j < out; ++j) {
      bias(0, j) = static_cast<T>(new_bias[static_cast<std::size_t>(j)]);
    }
  }
}

template void fold_standard_scaler(const StandardScaler&, Dense<float>&);
template void fold_standard_scaler(const StandardScaler&, Dense<double>&);

}  // namespace bnorm::nn
