// Sequential: a chain of layers, with the activations kept for backward.
#pragma once

#include <memory>
#include <vector>

#include "bnorm/nn/layer.hpp"

namespace bnorm::nn {

template <class T>
class Sequential {
 public:
  void add(std::unique_ptr<Layer<T>> layer) { layers_.push_back(std::move(layer)); }

  // Runs every layer; returns the last output (valid until the next forward).
  const Tensor<T>& forward(const Tensor<T>& x, Mode mode);
  // Back-propagates dy (the gradient of the loss with respect to the last output) and assigns
  // every parameter gradient. The input gradient is not computed.
  void backward(const Tensor<T>& dy);
  // Layer::begin_step on every layer (before a training forward).
  void begin_step(std::int64_t step, std::int64_t first_example) {
    for (auto& layer : layers_) layer->begin_step(step, first_example);
  }

  [[nodiscard]] std::size_t size() const { return layers_.size(); }
  [[nodiscard]] Layer<T>& layer(std::size_t i) { return *layers_.at(i); }
  // The output of layer i in the last forward.
  [[nodiscard]] const Tensor<T>& output(std::size_t i) const { return outputs_.at(i); }
  // Every parameter and buffer, named "<index>.<kind>.<name>" (e.g. "0.dense.kernel").
  [[nodiscard]] std::vector<Parameter<T>> parameters();
  [[nodiscard]] std::vector<Buffer<T>> buffers();

 private:
  std::vector<std::unique_ptr<Layer<T>>> layers_;
  std::vector<Tensor<T>> outputs_;
  Tensor<T> grad_a_, grad_b_;
};

extern template class Sequential<float>;
extern template class Sequential<double>;

}  // namespace bnorm::nn
