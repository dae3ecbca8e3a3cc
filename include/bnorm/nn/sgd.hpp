// SGD with momentum and optional weight decay (the PyTorch formulation).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bnorm/nn/layer.hpp"

namespace bnorm::nn {

// From optimizer step `step` on (0-based: the number of steps taken before it), the learning
// rate is multiplied by `factor` (caffe's "multistep" policy, PyTorch's MultiStepLR).
struct LrDrop {
  std::int64_t step = 0;
  double factor = 0.1;
  bool operator==(const LrDrop&) const = default;
};

struct SgdOptions {
  double learning_rate = 0.1;
  double momentum = 0.0;
  double weight_decay = 0.0;
  std::vector<LrDrop> lr_drops;  // steps strictly increasing
};

// Throws bnorm::Error naming the field for learning_rate <= 0 or NaN, momentum outside [0, 1),
// weight_decay < 0, an lr_drops step <= 0 or not increasing, or a factor <= 0 or NaN.
void validate(const SgdOptions& options);

// learning_rate times the factor of every drop whose step is <= step.
[[nodiscard]] double learning_rate_at(const SgdOptions& options, std::int64_t step);

// Per parameter p with gradient g and velocity v (zero at the start):
//   g' = g + weight_decay * p;  v = momentum * v + g';  p -= lr * v.
// With momentum 0 this is plain SGD and no velocity is kept.
template <class T>
class Sgd {
 public:
  Sgd(const SgdOptions& options, const std::vector<Parameter<T>>& parameters);
  void step() { step(options_.learning_rate); }
  // One update with this learning rate (e.g. learning_rate_at(options(), steps taken)).
  void step(double learning_rate);
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
