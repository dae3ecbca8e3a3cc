// Layer: the interface every training-engine layer implements, and its parameter views.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "bnorm/nn/tensor.hpp"

namespace bnorm::nn {

// kTraining: batch statistics, state updates (moving averages), remembers what backward needs.
// kInference: moving statistics; no state change.
// kBatchStatistics: normalizes with the batch's own (local) statistics like training, but
//   changes no state and allows no backward: what the activations see during training, for
//   monitoring (the paper's Figure 1(b, c)).
enum class Mode { kTraining, kInference, kBatchStatistics };

// A trainable parameter: its values and the gradient the last backward assigned.
template <class T>
struct Parameter {
  std::string name;
  std::vector<std::int64_t> shape;
  std::span<T> value;
  std::span<T> grad;
  // True when backward already summed the gradient over the communicator's ranks (synchronized
  // batch norm); data-parallel training then must not all-reduce it again.
  bool reduced_over_ranks = false;
};

// Non-trainable state saved with the model (moving statistics).
template <class T>
struct Buffer {
  std::string name;
  std::vector<std::int64_t> shape;
  std::span<T> value;
};

// Layers map a tensor of N examples to a tensor of N examples: (N, features) for Dense, NHWC
// (N, H, W, C) feature maps for Conv2d and MaxPool2d. A layer checks the number of values per
// example (Tensor::cols()), not the rank, so that an elementwise layer may pass either on.
// Contract shared by every layer:
// - forward resizes y and assigns it. In training mode it remembers x and y (by address: both
//   must stay alive and unchanged until backward; Sequential guarantees it).
// - backward requires a preceding training-mode forward; dy has y's shape. It assigns (never
//   accumulates) every parameter gradient and, when dx is not null, resizes and assigns dx.
template <class T>
class Layer {
 public:
  virtual ~Layer() = default;
  [[nodiscard]] virtual std::string kind() const = 0;
  [[nodiscard]] virtual std::int64_t out_features() const = 0;
  virtual void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) = 0;
  virtual void backward(const Tensor<T>& dy, Tensor<T>* dx) = 0;
  [[nodiscard]] virtual std::vector<Parameter<T>> parameters() { return {}; }
  [[nodiscard]] virtual std::vector<Buffer<T>> buffers() { return {}; }
  // Called before each training forward: `step` is the number of optimizer steps taken so far
  // and `first_example` the global index (within the global batch) of x's first row. Layers
  // whose training forward is random (Dropout) draw from these, so that a resumed or
  // data-parallel run sees the same randomness. Default: nothing.
  virtual void begin_step(std::int64_t step, std::int64_t first_example) {
    (void)step;
    (void)first_example;
  }
};

}  // namespace bnorm::nn
