// The paper's MLP (Ioffe & Szegedy 2015, section 4.1) with BN before, after or without.
#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/nn/mlp.hpp"

namespace bnorm::nn {

BnPlacement parse_bn_placement(std::string_view name) {
  if (name == "none") return BnPlacement::kNone;
  if (name == "before") return BnPlacement::kBefore;
  if (name == "after") return BnPlacement::kAfter;
  throw Error(fmt::format("--bn '{}'; expected none, before or after", name));
}

std::string_view bn_placement_name(BnPlacement placement) {
  switch (placement) {
    case BnPlacement::kNone:
      return "none";
    case BnPlacement::kBefore:
      return "before";
    case BnPlacement::kAfter:
      return "after";
  }
  return "?";
}

template <class T>
Mlp<T> build_mlp(const MlpSpec& spec, Rng& rng) {
  if (spec.inputs <= 0) throw Error(fmt::format("inputs {}; expected > 0", spec.inputs));
  if (spec.classes <= 0) throw Error(fmt::format("classes {}; expected > 0", spec.classes));
  if (spec.hidden.empty()) throw Error("--hidden is empty; expected at least one layer width");
  for (std::int64_t h : spec.hidden) {
    if (h <= 0) throw Error(fmt::format("--hidden width {}; expected every width > 0", h));
  }
  Mlp<T> mlp;
  std::int64_t in = spec.inputs;
  for (std::int64_t width : spec.hidden) {
    // With BN before the activation the Dense bias is redundant: BN removes the mean and beta
    // takes the bias's role (the paper, section 3.2).
    const bool bias = spec.bn != BnPlacement::kBefore;
    mlp.net.add(std::make_unique<Dense<T>>(in, width, bias, spec.init, rng));
    if (spec.bn == BnPlacement::kBefore) {
      mlp.net.add(std::make_unique<BatchNormLayer<T>>(width, spec.bn_options));
    }
    mlp.tracked_layer = mlp.net.size() - 1;
    mlp.net.add(std::make_unique<Activation<T>>(spec.activation, width));
    if (spec.bn == BnPlacement::kAfter) {
      mlp.net.add(std::make_unique<BatchNormLayer<T>>(width, spec.bn_options));
    }
    in = width;
  }
  mlp.net.add(std::make_unique<Dense<T>>(in, spec.classes, true, spec.init, rng));
  return mlp;
}

template Mlp<float> build_mlp(const MlpSpec&, Rng&);
template Mlp<double> build_mlp(const MlpSpec&, Rng&);

}  // namespace bnorm::nn
