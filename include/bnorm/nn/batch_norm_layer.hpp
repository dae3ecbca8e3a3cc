// BatchNormLayer: batch normalization of (N, features) activations, or of NHWC feature maps
// (N, H, W, C) with statistics per channel over the batch and every position (the paper's
// section 3.2), inside a Sequential.
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

struct BatchNormLayerOptions {
  double momentum = 0.99;  // Keras convention
  double epsilon = 1e-3;
  // Learn beta (center) and gamma (scale). Both false is caffe's BatchNorm layer without its
  // "Scale" layer: y = x_hat exactly.
  bool center = true;
  bool scale = true;
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

// Throws bnorm::Error naming the field (e.g. "BatchNormLayerOptions::momentum") for momentum
// outside [0, 1], epsilon < 0 or NaN, renorm_rmax < 1, renorm_dmax < 0, virtual_batch < 0, or
// renorm together with virtual_batch.
void validate(const BatchNormLayerOptions& options);

template <class T>
class BatchNormLayer final : public Layer<T> {
 public:
  // `channels` statistics; each example holds `positions` x `channels` values, channel fastest
  // (NHWC: positions = H*W). Throws bnorm::Error for channels or positions <= 0.
  BatchNormLayer(std::int64_t channels, const BatchNormLayerOptions& options,
                 std::int64_t positions = 1);

  [[nodiscard]] std::string kind() const override { return "batch_norm"; }
  [[nodiscard]] std::int64_t out_features() const override { return channels_ * positions_; }
  [[nodiscard]] std::int64_t channels() const { return channels_; }
  // x: N examples of positions*channels values (any shape with that per-example size; y takes
  // x's shape). Training: batch statistics (throws bnorm::Error for a batch of one value per
  // channel, or N not a multiple of virtual_batch) and one moving-average update. Inference: the
  // moving statistics. Batch statistics: the batch's own local statistics (whole batch), no state
  // change.
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void backward(const Tensor<T>& dy, Tensor<T>* dx) override;
  [[nodiscard]] std::vector<Parameter<T>> parameters() override;
  [[nodiscard]] std::vector<Buffer<T>> buffers() override;

  // Empty when options.scale (gamma) or options.center (beta) is false.
  [[nodiscard]] std::span<T> gamma() { return layer_.gamma(); }
  [[nodiscard]] std::span<T> beta() { return layer_.beta(); }
  [[nodiscard]] std::span<T> moving_mean() { return layer_.moving_mean(); }
  [[nodiscard]] std::span<T> moving_variance() { return layer_.moving_variance(); }
  [[nodiscard]] BasicBatchNorm<T>& layer() { return layer_; }

 private:
  [[nodiscard]] std::vector<std::int64_t> shape_of(std::int64_t n) const;
  std::int64_t channels_, positions_;
  BatchNormLayerOptions options_;
  BasicBatchNorm<T> layer_;
  const Tensor<T>* x_ = nullptr;  // input of the last training forward (backward needs it)
  Tensor<T> scratch_dx_;
  std::vector<T> scratch_mean_, scratch_variance_;
};

extern template class BatchNormLayer<float>;
extern template class BatchNormLayer<double>;

}  // namespace bnorm::nn
