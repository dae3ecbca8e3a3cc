// Sequential: forward keeps every layer's output (the next layer's backward needs it);
// backward ping-pongs between two gradient buffers.
#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/nn/sequential.hpp"

namespace bnorm::nn {

template <class T>
const Tensor<T>& Sequential<T>::forward(const Tensor<T>& x, Mode mode) {
  if (layers_.empty()) throw Error("Sequential::forward: no layers");
  outputs_.resize(layers_.size());
  const Tensor<T>* in = &x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->forward(*in, outputs_[i], mode);
    in = &outputs_[i];
  }
  return outputs_.back();
}

template <class T>
void Sequential<T>::backward(const Tensor<T>& dy) {
  const Tensor<T>* grad = &dy;
  Tensor<T>* next = &grad_a_;
  for (std::size_t i = layers_.size(); i-- > 0;) {
    // The first layer's input gradient is not needed by anyone.
    layers_[i]->backward(*grad, i == 0 ? nullptr : next);
    grad = next;
    next = next == &grad_a_ ? &grad_b_ : &grad_a_;
  }
}

template <class T>
std::vector<Parameter<T>> Sequential<T>::parameters() {
  std::vector<Parameter<T>> all;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    for (auto& p : layers_[i]->parameters()) {
      p.name = fmt::format("{}.{}.{}", i, layers_[i]->kind(), p.name);
      all.push_back(std::move(p));
    }
  }
  return all;
}

template <class T>
std::vector<Buffer<T>> Sequential<T>::buffers() {
  std::vector<Buffer<T>> all;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    for (auto& b : layers_[i]->buffers()) {
      b.name = fmt::format("{}.{}.{}", i, layers_[i]->kind(), b.name);
      all.push_back(std::move(b));
    }
  }
  return all;
}

template class Sequential<float>;
template class Sequential<double>;

}  // namespace bnorm::nn
