// BatchNormLayer: the functional API plus the state a layer keeps (see the header for why this
// file is deliberately thin). Shapes: x is (N, C), seen as Geometry{N, C, 1}.
//
// Batch renormalization reuses the functional kernels exactly: forward_training with gamma = 1,
// beta = 0 gives x_hat, then y = gamma*(x_hat*r + d) + beta per channel. Because r and d are
// constants for the gradient, backward is the BN backward with gamma_eff = gamma*r (dx), and
//   dgamma = sum dy*(x_hat*r + d) = r * sum(dy*x_hat) + d * sum(dy),   dbeta = sum dy.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/functional.hpp"
#include "bnorm/nn/batch_norm_layer.hpp"

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
  if (o.virtual_batch > 0 && o.comm != nullptr) {
    throw Error(
        fmt::format("--virtual-batch {} with synchronized batch norm; expected one of "
                    "the two (ghost batches are per process)",
                    o.virtual_batch));
  }
}

template <class T>
BatchNormLayer<T>::BatchNormLayer(std::int64_t features, const BatchNormOptions& options)
    : features_(features), options_(options) {
  if (features <= 0) throw Error(fmt::format("BatchNorm: features {}; expected > 0", features));
  validate(options);
  gamma_.resize(1, features);
  gamma_.fill(T{1});
  beta_.resize(1, features);
  dgamma_.resize(1, features);
  dbeta_.resize(1, features);
  moving_mean_.resize(1, features);
  moving_variance_.resize(1, features);
  moving_variance_.fill(T{1});
  dgamma_tmp_.resize(1, features);
  dbeta_tmp_.resize(1, features);
  gamma_r_.resize(1, features);
}

template <class T>
void BatchNormLayer<T>::forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  const std::int64_t n = x.rows();
  const std::int64_t c = features_;
  if (x.cols() != c) {
    throw Error(fmt::format("BatchNorm: input has {} columns; expected {}", x.cols(), c));
  }
  y.resize(n, c);
  const T eps = static_cast<T>(options_.epsilon);
  if (mode == Mode::kInference) {
    forward_inference(x.span(), y.span(), Geometry{n, c, 1}, gamma_.span(), beta_.span(),
                      moving_mean_.span(), moving_variance_.span(), eps);
    x_ = nullptr;
    return;
  }
  const bool training = mode == Mode::kTraining;
  // Monitoring passes run on one process: they must not call collectives.
  const Communicator* comm = training ? options_.comm : nullptr;
  const std::int64_t vb = options_.virtual_batch;
  if (vb > 0 && n % vb != 0) {
    throw Error(
        fmt::format("BatchNorm: batch of {} rows with --virtual-batch {}; expected the "
                    "virtual batch to divide the batch",
                    n, vb));
  }
  const std::int64_t groups = vb > 0 ? n / vb : 1;
  const std::int64_t rows = vb > 0 ? vb : n;
  batch_mean_.resize(groups, c);
  batch_variance_.resize(groups, c);
  r_.resize(groups, c);
  d_.resize(groups, c);
  for (std::int64_t g = 0; g < groups; ++g) {
    const auto off = static_cast<std::size_t>(g * rows * c);
    const auto len = static_cast<std::size_t>(rows * c);
    const auto xs = x.span().subspan(off, len);
    const auto ys = y.span().subspan(off, len);
    const auto mean = batch_mean_.span().subspan(static_cast<std::size_t>(g * c), c);
    const auto var = batch_variance_.span().subspan(static_cast<std::size_t>(g * c), c);
    const Geometry geo{rows, c, 1};
    const std::span<const T> gamma = options_.renorm ? std::span<const T>{} : gamma_.span();
    const std::span<const T> beta = options_.renorm ? std::span<const T>{} : beta_.span();
    if (comm != nullptr) {
      forward_training(xs, ys, geo, gamma, beta, eps, mean, var, *comm);
    } else {
      forward_training(xs, ys, geo, gamma, beta, eps, mean, var);
    }
    if (!options_.renorm) continue;
    T* r = r_.data() + g * c;
    T* d = d_.data() + g * c;
    const double rmax = options_.renorm_rmax;
    const double dmax = options_.renorm_dmax;
    for (std::int64_t j = 0; j < c; ++j) {
      const double sigma_moving = std::sqrt(double(moving_variance_.data()[j]) + options_.epsilon);
      const double sigma_batch = std::sqrt(double(var[j]) + options_.epsilon);
      r[j] = static_cast<T>(std::clamp(sigma_batch / sigma_moving, 1.0 / rmax, rmax));
      d[j] = static_cast<T>(std::clamp(
          (double(mean[j]) - double(moving_mean_.data()[j])) / sigma_moving, -dmax, dmax));
    }
    const T* gm = gamma_.data();
    const T* bt = beta_.data();
    for (std::int64_t i = 0; i < rows; ++i) {
      T* row = ys.data() + i * c;
      for (std::int64_t j = 0; j < c; ++j) row[j] = gm[j] * (row[j] * r[j] + d[j]) + bt[j];
    }
  }
  if (!training) {
    x_ = nullptr;
    return;
  }
  // The moving-average update, once per training step (Keras momentum convention, biased
  // variance); with virtual batches from the groups' average statistics, as tf.keras does.
  const double m = options_.momentum;
  for (std::int64_t j = 0; j < c; ++j) {
    double mean = 0, var = 0;
    for (std::int64_t g = 0; g < groups; ++g) {
      mean += batch_mean_(g, j);
      var += batch_variance_(g, j);
    }
    mean /= static_cast<double>(groups);
    var /= static_cast<double>(groups);
    T& mm = moving_mean_.data()[j];
    T& mv = moving_variance_.data()[j];
    mm = static_cast<T>(m * mm + (1 - m) * mean);
    mv = static_cast<T>(m * mv + (1 - m) * var);
  }
  x_ = &x;
}

template <class T>
void BatchNormLayer<T>::backward(const Tensor<T>& dy, Tensor<T>* dx) {
  if (x_ == nullptr) throw Error("BatchNorm::backward: no training-mode forward before it");
  const std::int64_t n = x_->rows();
  const std::int64_t c = features_;
  if (dy.rows() != n || dy.cols() != c) {
    throw Error(fmt::format("BatchNorm::backward: dy is ({}, {}); expected ({}, {})", dy.rows(),
                            dy.cols(), n, c));
  }
  Tensor<T> scratch;
  Tensor<T>& out = dx != nullptr ? *dx : scratch;
  out.resize(n, c);
  const std::int64_t groups = batch_mean_.rows();
  const std::int64_t rows = n / groups;
  const T eps = static_cast<T>(options_.epsilon);
  dgamma_.fill(T{0});
  dbeta_.fill(T{0});
  for (std::int64_t g = 0; g < groups; ++g) {
    const auto off = static_cast<std::size_t>(g * rows * c);
    const auto len = static_cast<std::size_t>(rows * c);
    const auto mean = batch_mean_.span().subspan(static_cast<std::size_t>(g * c), c);
    const auto var = batch_variance_.span().subspan(static_cast<std::size_t>(g * c), c);
    std::span<const T> gamma = gamma_.span();
    if (options_.renorm) {
      for (std::int64_t j = 0; j < c; ++j) gamma_r_.data()[j] = gamma_.data()[j] * r_(g, j);
      gamma = gamma_r_.span();
    }
    const Geometry geo{rows, c, 1};
    if (options_.comm != nullptr) {
      bnorm::backward(x_->span().subspan(off, len), dy.span().subspan(off, len), geo, gamma, mean,
                      var, eps, out.span().subspan(off, len), dgamma_tmp_.span(), dbeta_tmp_.span(),
                      *options_.comm);
    } else {
      bnorm::backward(x_->span().subspan(off, len), dy.span().subspan(off, len), geo, gamma, mean,
                      var, eps, out.span().subspan(off, len), dgamma_tmp_.span(),
                      dbeta_tmp_.span());
    }
    for (std::int64_t j = 0; j < c; ++j) {
      const T sum_dy_xhat = dgamma_tmp_.data()[j];
      const T sum_dy = dbeta_tmp_.data()[j];
      dgamma_.data()[j] +=
          options_.renorm ? r_(g, j) * sum_dy_xhat + d_(g, j) * sum_dy : sum_dy_xhat;
      dbeta_.data()[j] += sum_dy;
    }
  }
}

template <class T>
std::vector<Parameter<T>> BatchNormLayer<T>::parameters() {
  const bool reduced = options_.comm != nullptr;
  return {{"gamma", {features_}, gamma_.span(), dgamma_.span(), reduced},
          {"beta", {features_}, beta_.span(), dbeta_.span(), reduced}};
}

template <class T>
std::vector<Buffer<T>> BatchNormLayer<T>::buffers() {
  return {{"moving_mean", {features_}, moving_mean_.span()},
          {"moving_variance", {features_}, moving_variance_.span()}};
}

template class BatchNormLayer<float>;
template class BatchNormLayer<double>;

}  // namespace bnorm::nn
