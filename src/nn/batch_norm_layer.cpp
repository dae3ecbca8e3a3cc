// BatchNormLayer: the engine's view of bnorm::BatchNorm. Shapes: x is (N, C), channel axis -1.
#include "bnorm/nn/batch_norm_layer.hpp"

#include <fmt/format.h>

#include <memory>

#include "bnorm/error.hpp"
#include "bnorm/functional.hpp"

namespace bnorm::nn {

void validate(const BatchNormOptions& o) {
  if (!(o.momentum >= 0 && o.momentum <= 1)) {
    throw Error(
        fmt::format("--bn-momentum {}; expected a value in [0, 1] (Keras convention: "
                    "moving = m*moving + (1-m)*batch)",
                    o.momentum));
  }
  if (!(o.epsilon >= 0)) throw Error(fmt::format("--bn-epsilon {}; expected >= 0", o.epsilon));
  if (!(o.renorm_rmax >= 1)) {
    throw Error(fmt::format("--renorm-rmax {}; expected >= 1", o.renorm_rmax));
  }
  if (!(o.renorm_dmax >= 0)) {
    throw Error(fmt::format("--renorm-dmax {}; expected >= 0", o.renorm_dmax));
  }
  if (o.virtual_batch < 0) {
    throw Error(fmt::format("--virtual-batch {}; expected >= 0 (0: off)", o.virtual_batch));
  }
  if (o.virtual_batch > 0 && o.renorm) {
    throw Error(
        fmt::format("--virtual-batch {} with --renorm; expected one of the two", o.virtual_batch));
  }
}

namespace {

bnorm::BatchNormOptions layer_options(const BatchNormOptions& o) {
  validate(o);
  bnorm::BatchNormOptions options;  // Keras defaults and conventions; axis -1 of (N, C)
  options.momentum = o.momentum;
  options.epsilon = o.epsilon;
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

}  // namespace

template <class T>
BatchNormLayer<T>::BatchNormLayer(std::int64_t features, const BatchNormOptions& options)
    : features_(features), options_(options), layer_(features, layer_options(options)) {}

template <class T>
void BatchNormLayer<T>::forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  const std::int64_t n = x.rows();
  if (x.cols() != features_) {
    throw Error(fmt::format("BatchNorm: input has {} columns; expected {}", x.cols(), features_));
  }
  y.resize(n, features_);
  const std::int64_t shape[] = {n, features_};
  x_ = nullptr;
  if (mode == Mode::kTraining && options_.virtual_batch > 0 && n % options_.virtual_batch != 0) {
    throw Error(
        fmt::format("BatchNorm: batch of {} rows with --virtual-batch {}; expected the "
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
      scratch_mean_.resize(static_cast<std::size_t>(features_));
      scratch_variance_.resize(static_cast<std::size_t>(features_));
      forward_training(x.span(), y.span(), Geometry{n, features_, 1}, layer_.gamma(), layer_.beta(),
                       static_cast<T>(options_.epsilon), scratch_mean_, scratch_variance_);
      return;
  }
}

template <class T>
void BatchNormLayer<T>::backward(const Tensor<T>& dy, Tensor<T>* dx) {
  if (x_ == nullptr) throw Error("BatchNorm::backward: no training-mode forward before it");
  if (dy.rows() != x_->rows() || dy.cols() != features_) {
    throw Error(fmt::format("BatchNorm::backward: dy is ({}, {}); expected ({}, {})", dy.rows(),
                            dy.cols(), x_->rows(), features_));
  }
  Tensor<T>& out = dx != nullptr ? *dx : scratch_dx_;
  out.resize(x_->rows(), features_);
  layer_.backward(x_->span(), dy.span(), out.span());
}

template <class T>
std::vector<Parameter<T>> BatchNormLayer<T>::parameters() {
  // Synchronized: the layer's gradients are already global sums.
  const bool reduced = options_.comm != nullptr;
  return {{"gamma", {features_}, layer_.gamma(), layer_.gamma_grad(), reduced},
          {"beta", {features_}, layer_.beta(), layer_.beta_grad(), reduced}};
}

template <class T>
std::vector<Buffer<T>> BatchNormLayer<T>::buffers() {
  std::vector<Buffer<T>> state = {{"moving_mean", {features_}, layer_.moving_mean()},
                                  {"moving_variance", {features_}, layer_.moving_variance()}};
  if (options_.renorm) {
    state.push_back({"renorm_mean", {features_}, layer_.renorm_mean()});
    state.push_back({"renorm_stddev", {features_}, layer_.renorm_stddev()});
    state.push_back({"moving_stddev", {features_}, layer_.moving_stddev()});
  }
  return state;
}

template class BatchNormLayer<float>;
template class BatchNormLayer<double>;

}  // namespace bnorm::nn
