// sigmoid, relu, tanh, elu and their derivatives written in terms of the output y.
#include <cmath>

#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/nn/activations.hpp"

namespace bnorm::nn {

ActivationKind parse_activation(std::string_view name) {
  if (name == "sigmoid") return ActivationKind::kSigmoid;
  if (name == "relu") return ActivationKind::kRelu;
  if (name == "tanh") return ActivationKind::kTanh;
  if (name == "elu") return ActivationKind::kElu;
  throw Error(fmt::format("activation '{}'; expected sigmoid, relu, tanh or elu", name));
}

std::string_view activation_name(ActivationKind kind) {
  switch (kind) {
    case ActivationKind::kSigmoid:
      return "sigmoid";
    case ActivationKind::kRelu:
      return "relu";
    case ActivationKind::kTanh:
      return "tanh";
    case ActivationKind::kElu:
      return "elu";
  }
  return "?";
}

template <class T>
void Activation<T>::forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  if (x.cols() != features_) {
    throw Error(fmt::format("{}: input has {} columns; expected {}", kind(), x.cols(), features_));
  }
  y.resize(x.shape());
  const T* in = x.data();
  T* out = y.data();
  const std::int64_t n = x.size();
  switch (kind_) {
    case ActivationKind::kSigmoid:
      for (std::int64_t i = 0; i < n; ++i) out[i] = T{1} / (T{1} + std::exp(-in[i]));
      break;
    case ActivationKind::kRelu:
      for (std::int64_t i = 0; i < n; ++i) out[i] = in[i] > T{0} ? in[i] : T{0};
      break;
    case ActivationKind::kTanh:
      for (std::int64_t i = 0; i < n; ++i) out[i] = std::tanh(in[i]);
      break;
    case ActivationKind::kElu:
      for (std::int64_t i = 0; i < n; ++i) out[i] = in[i] > T{0} ? in[i] : std::expm1(in[i]);
      break;
  }
  y_ = mode == Mode::kTraining ? &y : nullptr;
}

template <class T>
void Activation<T>::backward(const Tensor<T>& dy, Tensor<T>* dx) {
  if (y_ == nullptr) throw Error(fmt::format("{}::backward: no training-mode forward", kind()));
  if (dy.size() != y_->size()) {
    throw Error(
        fmt::format("{}::backward: dy has {} values; expected {}", kind(), dy.size(), y_->size()));
  }
  if (dx == nullptr) return;
  dx->resize(dy.shape());
  const T* y = y_->data();
  const T* g = dy.data();
  T* out = dx->data();
  const std::int64_t n = dy.size();
  switch (kind_) {
    case ActivationKind::kSigmoid:
      for (std::int64_t i = 0; i < n; ++i) out[i] = g[i] * y[i] * (T{1} - y[i]);
      break;
    case ActivationKind::kRelu:
      for (std::int64_t i = 0; i < n; ++i) out[i] = y[i] > T{0} ? g[i] : T{0};
      break;
    case ActivationKind::kTanh:
      for (std::int64_t i = 0; i < n; ++i) out[i] = g[i] * (T{1} - y[i] * y[i]);
      break;
    case ActivationKind::kElu:
      for (std::int64_t i = 0; i < n; ++i) out[i] = y[i] > T{0} ? g[i] : g[i] * (y[i] + T{1});
      break;
  }
}

template class Activation<float>;
template class Activation<double>;

}  // namespace bnorm::nn
