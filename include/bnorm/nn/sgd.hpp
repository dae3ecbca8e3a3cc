// SGD with momentum and optional weight decay (the PyTorch formulation).
#pragma once

#include <string>
#include <vector>

#include "bnorm/nn/layer.hpp"

namespace bnorm::nn {

struct SgdOptions {
  double learning_rate = 0.1;
  double momentum = 0.0;
  double weight_decay = 0.0;
};

// Throws bnorm::Error naming the option for lr <= 0 or NaN, momentum outside [0, 1),
// weight_decay < 0.
void validate(const SgdOptions& options);

// Per parameter p with gradient g and velocity v (zero at the start):
//   g' = g + weight_decay * p;  v = momentum * v + g';  p -= lr * v.
// With momentum 0 this is plain SGD and no velocity is kept.
template <class T>
class Sgd {
 public:
  Sgd(const SgdOptions& options, const std::vector<Parameter<T>>& parameters);
  void step();
  [[nodiscard]] const SgdOptions& options() const { return options_; }
  // The velocities, named like the parameters, for checkpoints (empty when momentum == 0).
  [[nodiscard]] std::vector<Buffer<T>> state();

 private:
  SgdOptions options_;
  std::vector<Parameter<T>> parameters_;
  std::vector<Tensor<T>> velocity_;
};

extern template class Sgd<float>;
extern template class Sgd<double>;

}  // namespace bnorm::nn
