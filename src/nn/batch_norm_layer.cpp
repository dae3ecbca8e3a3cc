// BatchNormLayer: the engine's view of bnorm::BatchNorm. x is (N, positions, C), channel axis -1:
// (N, C) for Dense outputs, NHWC feature maps with positions = H*W.
#include "bnorm/nn/batch_norm_layer.hpp"

#include <fmt/format.h>

#include <memory>

#include "bnorm/error.hpp"
#include "bnorm/functional.hpp"

namespace bnorm::nn {

void validate(const BatchNormLayerOptions& o) {
  if (!(o.momentum >= 0 && o.momentum <= 1)) {
    throw Error(
        fmt::format("BatchNormLayerOptions::momentum {}; expected a value in [0, 1] (Keras "
                    "convention: moving = m*moving + (1-m)*batch)",
                    o.momentum));
  }
  if (!(o.epsilon >= 0)) {
    throw Error(fmt::format("BatchNormLayerOptions::epsilon {}; expected >= 0", o.epsilon));
  }
  if (!(o.renorm_rmax >= 1)) {
    throw Error(fmt::format("BatchNormLayerOptions::renorm_rmax {}; expected >= 1", o.renorm_rmax));
  }
  if (!(o.renorm_dmax >= 0)) {
    throw Error(fmt::format("BatchNormLayerOptions::renorm_dmax {}; expected >= 0", o.renorm_dmax));
  }
  if (o.virtual_batch < 0) {
    throw Error(fmt::format("BatchNormLayerOptions::virtual_batch {}; expected >= 0 (0: off)",
                            o.virtual_batch));
  }
  if (o.virtual_batch > 0 && o.renorm) {
    throw Error(
        fmt::format("BatchNormLayerOptions::virtual_batch {} with BatchNormLayerOptions::renorm; "
                    "expected one of the two",
                    o.virtual_batch));
  }
}

namespace {

bnorm::BatchNormOptions layer_options(const BatchNormLayerOptions& o) {
  validate(o);
  bnorm::BatchNormOptions options;  // Keras defaults and conventions; channel axis -1
  options.momentum = o.momentum;
  options.epsilon = o.epsilon;
  options.center = o.center;
  options.scale = o.scale;
  options.renorm = o.renorm;
  options.renorm_momentum = o.momentum;
  options.renorm_clipping = {o.renorm_rmax, 1 / o.renorm_rmax, o.renorm_dmax};
  options.virtual_batch_size = o.virtual_batch;
  if (o.comm != nullptr) {
    options.synchronized = true;
    // Not owned: the caller keeps the communicator alive (an aliasing pointer with no owner).
    options.communicator = std::shared_ptr<const Communicator>(std::shared_ptr<void>(), o.comm);
  }
  return options;
}

std::int64_t checked_channels(std::int64_t channels, std::int64_t positions) {
  if (channels <= 0 || positions <= 0) {
    throw Error(fmt::format("BatchNormLayer: channels={}, positions={}; expected both > 0",
                            channels, positions));
  }
  return channels;
}

}  // namespace

template <class T>
BatchNormLayer<T>::BatchNormLayer(std::int64_t channels, const BatchNormLayerOptions& options,
                                  std::int64_t positions)
    : channels_(checked_channels(channels, positions)),
      positions_(positions),
      options_(options),
      layer_(channels, layer_options(options)) {}

template <class T>
std::vector<std::int64_t> BatchNormLayer<T>::shape_of(std::int64_t n) const {
  // Rank 2 for (N, C) keeps the (N, C) geometry the layer's own tests cover.
  if (positions_ == 1) return {n, channels_};
  return {n, positions_, channels_};
}

template <class T>
void BatchNormLayer<T>::forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  const std::int64_t n = x.rows();
  if (x.cols() != out_features()) {
    throw Error(
        fmt::format("BatchNorm: input has {} values per example; expected {} ({} "
                    "positions x {} channels)",
                    x.cols(), out_features(), positions_, channels_));
  }
  y.resize(x.shape());
  const std::vector<std::int64_t> shape = shape_of(n);
  x_ = nullptr;
  if (mode == Mode::kTraining && options_.virtual_batch > 0 && n % options_.virtual_batch != 0) {
    throw Error(
        fmt::format("BatchNorm: batch of {} examples with virtual_batch {}; expected the "
                    "virtual batch to divide the batch",
                    n, options_.virtual_batch));
  }
  switch (mode) {
    case Mode::kTraining:
      layer_.forward(x.span(), shape, y.span(), /*training=*/true);
      x_ = &x;
      return;
    case Mode::kInference:
      layer_.forward(x.span(), shape, y.span(), /*training=*/false);
      return;
    case Mode::kBatchStatistics:
      // Monitoring on one process: local statistics, no collectives, no state.
      scratch_mean_.resize(static_cast<std::size_t>(channels_));
      scratch_variance_.resize(static_cast<std::size_t>(channels_));
      forward_training(x.span(), y.span(), Geometry{n * positions_, channels_, 1}, layer_.gamma(),
                       layer_.beta(), static_cast<T>(options_.epsilon), scratch_mean_,
                       scratch_variance_);
      return;
  }
}

template <class T>
void BatchNormLayer<T>::backward(const Tensor<T>& dy, Tensor<T>* dx) {
  if (x_ == nullptr) throw Error("BatchNorm::backward: no training-mode forward before it");
  if (dy.rows() != x_->rows() || dy.cols() != out_features()) {
    throw Error(fmt::format("BatchNorm::backward: dy is ({}, {}); expected ({}, {})", dy.rows(),
                            dy.cols(), x_->rows(), out_features()));
  }
  Tensor<T>& out = dx != nullptr ? *dx : scratch_dx_;
  out.resize(x_->shape());
  layer_.backward(x_->span(), dy.span(), out.span());
}

template <class T>
std::vector<Parameter<T>> BatchNormLayer<T>::parameters() {
  // Synchronized: the layer's gradients are already global sums.
  const bool reduced = options_.comm != nullptr;
  std::vector<Parameter<T>> p;
  if (options_.scale) {
    p.push_back({"gamma", {channels_}, layer_.gamma(), layer_.gamma_grad(), reduced});
  }
  if (options_.center) {
    p.push_back({"beta", {channels_}, layer_.beta(), layer_.beta_grad(), reduced});
  }
  return p;
}

template <class T>
std::vector<Buffer<T>> BatchNormLayer<T>::buffers() {
  std::vector<Buffer<T>> state = {{"moving_mean", {channels_}, layer_.moving_mean()},
                                  {"moving_variance", {channels_}, layer_.moving_variance()}};
  if (options_.renorm) {
    state.push_back({"renorm_mean", {channels_}, layer_.renorm_mean()});
    state.push_back({"renorm_stddev", {channels_}, layer_.renorm_stddev()});
    state.push_back({"moving_stddev", {channels_}, layer_.moving_stddev()});
  }
  return state;
}

template class BatchNormLayer<float>;
template class BatchNormLayer<double>;

}  // namespace bnorm::nn
