// BatchNormLayer: batch normalization of (N, features) activations inside a Sequential.
//
// A thin adapter over the functional API (bnorm/functional.hpp) that owns gamma, beta and the
// moving statistics with the Keras conventions (momentum m: moving = m*moving + (1-m)*batch,
// biased batch variance, epsilon 1e-3). All the normalization arithmetic is bnorm's; this file
// only slices virtual batches, applies batch renormalization's per-channel (r, d) correction and
// keeps the moving averages. When the bnorm::BatchNorm layer is available this class becomes a
// wrapper of it (one file to change).
#pragma once

#include <cstdint>

#include "bnorm/comm.hpp"
#include "bnorm/nn/layer.hpp"

namespace bnorm::nn {

struct BatchNormOptions {
  double momentum = 0.99;  // Keras convention
  double epsilon = 1e-3;
  // Batch renormalization (Ioffe 2017): y = gamma*(x_hat*r + d) + beta with
  // r = clip(sigma_B/sigma_moving, 1/rmax, rmax), d = clip((mean_B-mean_moving)/sigma_moving,
  // -dmax, dmax), both treated as constants in backward; sigma_moving = sqrt(moving_var + eps).
  bool renorm = false;
  double renorm_rmax = 3.0;
  double renorm_dmax = 5.0;
  // Ghost batch norm: > 0 splits each training batch into groups of this many rows, each
  // normalized with its own statistics; the moving statistics take the groups' average.
  std::int64_t virtual_batch = 0;
  // Synchronized statistics over the communicator's ranks (each holding a slice of the global
  // batch); null for local statistics. Not owned; must outlive the layer.
  const Communicator* comm = nullptr;
};

// Throws bnorm::Error naming the option for momentum outside [0, 1], epsilon < 0 or NaN,
// rmax < 1, dmax < 0, virtual_batch < 0, or virtual_batch together with comm.
void validate(const BatchNormOptions& options);

template <class T>
class BatchNormLayer final : public Layer<T> {
 public:
  BatchNormLayer(std::int64_t features, const BatchNormOptions& options);

  [[nodiscard]] std::string kind() const override { return "batch_norm"; }
  [[nodiscard]] std::int64_t out_features() const override { return features_; }
  // Training: batch statistics (throws bnorm::Error for a batch of one row, or N not a multiple
  // of virtual_batch) and one moving-average update. Inference: the moving statistics.
  // Batch statistics: as training, with local statistics only, and no update.
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void backward(const Tensor<T>& dy, Tensor<T>* dx) override;
  [[nodiscard]] std::vector<Parameter<T>> parameters() override;
  [[nodiscard]] std::vector<Buffer<T>> buffers() override;

  [[nodiscard]] std::span<T> gamma() { return gamma_.span(); }
  [[nodiscard]] std::span<T> beta() { return beta_.span(); }
  [[nodiscard]] std::span<T> moving_mean() { return moving_mean_.span(); }
  [[nodiscard]] std::span<T> moving_variance() { return moving_variance_.span(); }

 private:
  std::int64_t features_;
  BatchNormOptions options_;
  Tensor<T> gamma_, beta_, dgamma_, dbeta_, moving_mean_, moving_variance_;
  // Per group (virtual batch) of the last training forward: statistics and renorm (r, d).
  Tensor<T> batch_mean_, batch_variance_, r_, d_, gamma_r_, dgamma_tmp_, dbeta_tmp_;
  const Tensor<T>* x_ = nullptr;
};

extern template class BatchNormLayer<float>;
extern template class BatchNormLayer<double>;

}  // namespace bnorm::nn
