// The networks bnorm-train trains: the paper's MNIST multilayer perceptron, or a small
// convolutional network from an architecture string, with BN placed by choice.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "bnorm/nn/activations.hpp"
#include "bnorm/nn/arch.hpp"
#include "bnorm/nn/batch_norm_layer.hpp"
#include "bnorm/nn/dense.hpp"
#include "bnorm/nn/feature_map.hpp"
#include "bnorm/nn/sequential.hpp"

namespace bnorm::nn {

// Where batch norm goes in each hidden block (Dense or Conv2d; BN per channel for Conv2d):
//   kNone:   Dense(+bias) -> act
//   kBefore: Dense(no bias) -> BN -> act   (the paper: beta takes the bias's role)
//   kAfter:  Dense(+bias) -> act -> BN
// A fully connected block then takes Dropout when MlpSpec::dropout > 0.
enum class BnPlacement { kNone, kBefore, kAfter };
[[nodiscard]] BnPlacement parse_bn_placement(std::string_view name);  // "none", "before", "after"
[[nodiscard]] std::string_view bn_placement_name(BnPlacement placement);

struct MlpSpec {
  std::int64_t inputs = 784;
  std::vector<std::int64_t> hidden = {100, 100, 100};
  // Non-empty: a convolutional network of these hidden items (parse_arch) over `image`, which
  // must have `inputs` values; `hidden` is then not used. Convolutions and pools read NHWC; the
  // first Dense after them (or the classifier) gets the flattened map.
  std::vector<LayerSpec> arch;
  FeatureMap image{28, 28, 1};
  // Dropout after each hidden fully connected block (0: none); see Dropout for the mask.
  double dropout = 0;
  std::int64_t classes = 10;
  ActivationKind activation = ActivationKind::kSigmoid;
  BnPlacement bn = BnPlacement::kNone;
  BatchNormLayerOptions bn_options;
  Init init;
};

template <class T>
struct Mlp {
  Sequential<T> net;
  // Index of the layer whose output is the input of the last hidden activation: the signal
  // whose percentiles the paper's Figure 1(b, c) follows.
  std::size_t tracked_layer = 0;
};

// Draws every kernel (Dense, Conv2d) from rng in layer order; the dropout masks' seed is taken
// from rng's state without advancing it. Throws bnorm::Error naming the field for inputs,
// classes or a hidden width <= 0, an empty hidden list, an image whose size is not `inputs`,
// a dropout rate outside [0, 1), or an architecture whose maps shrink to nothing.
template <class T>
Mlp<T> build_mlp(const MlpSpec& spec, Rng& rng);

}  // namespace bnorm::nn
