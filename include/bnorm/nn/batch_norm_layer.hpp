// BatchNormLayer: batch normalization of (N, features) activations inside a Sequential.
//
// A thin adapter of the bnorm::BatchNorm layer (bnorm/batch_norm.hpp) to the engine's Layer
// interface, with the Keras conventions (momentum m: moving = m*moving + (1-m)*batch, biased
// batch variance, epsilon 1e-3). Every piece of batch-norm behaviour (statistics, moving averages,
// renorm, ghost batches, synchronization) is the layer's; this file only maps shapes, modes and
// options.
#pragma once

#include <cstdint>

#include "bnorm/batch_norm.hpp"
#include "bnorm/comm.hpp"
#include "bnorm/nn/layer.hpp"

namespace bnorm::nn {

struct BatchNormOptions {
  double momentum = 0.99;  // Keras convention
  double epsilon = 1e-3;
  // Batch renormalization (Ioffe 2017, as tf.keras renorm=True): y = gamma*(x_hat*r + d) + beta
  // with r clipped to [1/rmax, rmax] and d to [-dmax, dmax], constants in backward; r and d are
  // taken against renorm statistics kept with the same momentum.
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

// Throws bnorm::Error naming the command-line option for momentum outside [0, 1], epsilon < 0 or
// NaN, rmax < 1, dmax < 0, virtual_batch < 0, or renorm together with virtual_batch.
void validate(const BatchNormOptions& options);

template <class T>
class BatchNormLayer final : public Layer<T> {
 public:
  BatchNormLayer(std::int64_t features, const BatchNormOptions& options);

  [[nodiscard]] std::string kind() const override { return "batch_norm"; }
  [[nodiscard]] std::int64_t out_features() const override { return features_; }
  // Training: batch statistics (throws bnorm::Error for a batch of one row, or N not a multiple
  // of virtual_batch) and one moving-average update. Inference: the moving statistics.
  // Batch statistics: the batch's own local statistics (whole batch), no state change.
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void backward(const Tensor<T>& dy, Tensor<T>* dx) override;
  [[nodiscard]] std::vector<Parameter<T>> parameters() override;
  [[nodiscard]] std::vector<Buffer<T>> buffers() override;

  [[nodiscard]] std::span<T> gamma() { return layer_.gamma(); }
  [[nodiscard]] std::span<T> beta() { return layer_.beta(); }
  [[nodiscard]] std::span<T> moving_mean() { return layer_.moving_mean(); }
  [[nodiscard]] std::span<T> moving_variance() { return layer_.moving_variance(); }
  [[nodiscard]] BasicBatchNorm<T>& layer() { return layer_; }

 private:
  std::int64_t features_;
  BatchNormOptions options_;
  BasicBatchNorm<T> layer_;
  const Tensor<T>* x_ = nullptr;  // input of the last training forward (backward needs it)
  Tensor<T> scratch_dx_;
  std::vector<T> scratch_mean_, scratch_variance_;
};

extern template class BatchNormLayer<float>;
extern template class BatchNormLayer<double>;

}  // namespace bnorm::nn
