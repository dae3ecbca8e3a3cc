// Elementwise activations: sigmoid, relu, tanh, elu. y takes x's shape (any rank).
#pragma once

#include <string_view>

#include "bnorm/nn/layer.hpp"

namespace bnorm::nn {

enum class ActivationKind { kSigmoid, kRelu, kTanh, kElu };

// "sigmoid", "relu", "tanh", "elu"; throws bnorm::Error naming the value and the choices otherwise.
[[nodiscard]] ActivationKind parse_activation(std::string_view name);
[[nodiscard]] std::string_view activation_name(ActivationKind kind);

// Backward uses the output y only: sigmoid' = y(1-y), tanh' = 1-y^2, relu' = [y > 0],
// elu' = 1 for y > 0 else y + 1 (ELU with alpha 1: y = x for x > 0, exp(x) - 1 otherwise;
// Clevert et al. 2016, caffenet's "ELU").
template <class T>
class Activation final : public Layer<T> {
 public:
  Activation(ActivationKind kind, std::int64_t features) : kind_(kind), features_(features) {}
  [[nodiscard]] std::string kind() const override { return std::string(activation_name(kind_)); }
  [[nodiscard]] std::int64_t out_features() const override { return features_; }
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void backward(const Tensor<T>& dy, Tensor<T>* dx) override;

 private:
  ActivationKind kind_;
  std::int64_t features_;
  const Tensor<T>* y_ = nullptr;
};

extern template class Activation<float>;
extern template class Activation<double>;

}  // namespace bnorm::nn
