// The multilayer perceptron of the paper's MNIST experiment, with BN placed by choice.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "bnorm/nn/activations.hpp"
#include "bnorm/nn/batch_norm_layer.hpp"
#include "bnorm/nn/dense.hpp"
#include "bnorm/nn/sequential.hpp"

namespace bnorm::nn {

// Where batch norm goes in each hidden block:
//   kNone:   Dense(+bias) -> act
//   kBefore: Dense(no bias) -> BN -> act   (the paper: beta takes the bias's role)
//   kAfter:  Dense(+bias) -> act -> BN
enum class BnPlacement { kNone, kBefore, kAfter };
[[nodiscard]] BnPlacement parse_bn_placement(std::string_view name);  // "none", "before", "after"
[[nodiscard]] std::string_view bn_placement_name(BnPlacement placement);

struct MlpSpec {
  std::int64_t inputs = 784;
  std::vector<std::int64_t> hidden = {100, 100, 100};
  std::int64_t classes = 10;
  ActivationKind activation = ActivationKind::kSigmoid;
  BnPlacement bn = BnPlacement::kNone;
  BatchNormOptions bn_options;
  Init init;
};

template <class T>
struct Mlp {
  Sequential<T> net;
  // Index of the layer whose output is the input of the last hidden activation: the signal
  // whose percentiles the paper's Figure 1(b, c) follows.
  std::size_t tracked_layer = 0;
};

// Draws every Dense kernel from rng in layer order. Throws bnorm::Error naming the field for
// inputs, classes or a hidden width <= 0, or an empty hidden list.
template <class T>
Mlp<T> build_mlp(const MlpSpec& spec, Rng& rng);

}  // namespace bnorm::nn
