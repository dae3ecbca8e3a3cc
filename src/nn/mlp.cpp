// The paper's MLP (Ioffe & Szegedy 2015, section 4.1) and small CNNs, with BN before, after or
// without, and dropout after the fully connected blocks.
#include <fmt/format.h>

#include <memory>

#include "bnorm/error.hpp"
#include "bnorm/nn/conv2d.hpp"
#include "bnorm/nn/dropout.hpp"
#include "bnorm/nn/max_pool2d.hpp"
#include "bnorm/nn/mlp.hpp"

namespace bnorm::nn {

BnPlacement parse_bn_placement(std::string_view name) {
  if (name == "none") return BnPlacement::kNone;
  if (name == "before") return BnPlacement::kBefore;
  if (name == "after") return BnPlacement::kAfter;
  throw Error(fmt::format("BN placement '{}'; expected none, before or after", name));
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

namespace {

template <class T>
class Builder {
 public:
  Builder(const MlpSpec& spec, Rng& rng)
      : spec_(spec),
        rng_(rng),
        // Not a draw: the weights stay the same whether or not the network has dropout.
        dropout_seed_(rng.state()[0] ^ rng.state()[3] ^ 0xD5A61266F0C9392CULL) {}

  // A hidden block around `linear` (a Dense or a Conv2d whose output has `channels` channels
  // at `positions` positions).
  void block(std::unique_ptr<Layer<T>> linear, std::int64_t channels, std::int64_t positions,
             bool dense) {
    const std::int64_t features = channels * positions;
    net().add(std::move(linear));
    if (spec_.bn == BnPlacement::kBefore) {
      net().add(std::make_unique<BatchNormLayer<T>>(channels, spec_.bn_options, positions));
    }
    mlp_.tracked_layer = net().size() - 1;
    net().add(std::make_unique<Activation<T>>(spec_.activation, features));
    if (spec_.bn == BnPlacement::kAfter) {
      net().add(std::make_unique<BatchNormLayer<T>>(channels, spec_.bn_options, positions));
    }
    if (dense && spec_.dropout > 0) {
      net().add(std::make_unique<Dropout<T>>(spec_.dropout, features, dropout_seed_, net().size()));
    }
  }

  // With BN before the activation the layer's bias is redundant: BN removes the mean and beta
  // takes the bias's role (the paper, section 3.2).
  [[nodiscard]] bool bias() const { return spec_.bn != BnPlacement::kBefore; }
  Sequential<T>& net() { return mlp_.net; }
  Rng& rng() { return rng_; }
  Mlp<T> take() { return std::move(mlp_); }

 private:
  const MlpSpec& spec_;
  Rng& rng_;
  std::uint64_t dropout_seed_;
  Mlp<T> mlp_;
};

void validate(const MlpSpec& spec) {
  if (spec.inputs <= 0) throw Error(fmt::format("MlpSpec::inputs {}; expected > 0", spec.inputs));
  if (spec.classes <= 0) {
    throw Error(fmt::format("MlpSpec::classes {}; expected > 0", spec.classes));
  }
  if (!(spec.dropout >= 0 && spec.dropout < 1)) {
    throw Error(fmt::format("MlpSpec::dropout {}; expected a value in [0, 1)", spec.dropout));
  }
  if (!spec.arch.empty()) {
    if (spec.image.size() != spec.inputs || spec.image.height <= 0 || spec.image.width <= 0) {
      throw Error(fmt::format("MlpSpec::image {}x{}x{}; expected {} values (MlpSpec::inputs)",
                              spec.image.height, spec.image.width, spec.image.channels,
                              spec.inputs));
    }
    return;
  }
  if (spec.hidden.empty())
    throw Error("MlpSpec::hidden is empty; expected at least one layer width");
  for (std::int64_t h : spec.hidden) {
    if (h <= 0) throw Error(fmt::format("MlpSpec::hidden width {}; expected every width > 0", h));
  }
}

template <class T>
void build_convolutional(const MlpSpec& spec, Builder<T>& b) {
  FeatureMap map = spec.image;
  std::int64_t flat = 0;  // > 0 once the network is fully connected
  for (const auto& item : spec.arch) {
    if (item.kind != LayerSpec::Kind::kDense && flat > 0) {
      throw Error(
          fmt::format("architecture '{}': a convolution or pool after a dense layer; "
                      "expected every c and p item before the first f",
                      format_arch(spec.arch)));
    }
    switch (item.kind) {
      case LayerSpec::Kind::kConv: {
        Conv2dOptions o{item.units, item.kernel, item.stride, -1, b.bias()};
        auto conv = std::make_unique<Conv2d<T>>(map, o, spec.init, b.rng());
        map = conv->out_shape();
        b.block(std::move(conv), map.channels, map.positions(), false);
        break;
      }
      case LayerSpec::Kind::kPool: {
        auto pool = std::make_unique<MaxPool2d<T>>(map, item.kernel, item.stride);
        map = pool->out_shape();
        b.net().add(std::move(pool));
        break;
      }
      case LayerSpec::Kind::kDense: {
        if (flat == 0) {
          flat = map.size();
          b.net().add(std::make_unique<Flatten<T>>(flat));
        }
        b.block(std::make_unique<Dense<T>>(flat, item.units, b.bias(), spec.init, b.rng()),
                item.units, 1, true);
        flat = item.units;
        break;
      }
    }
  }
  if (flat == 0) {
    flat = map.size();
    b.net().add(std::make_unique<Flatten<T>>(flat));
  }
  b.net().add(std::make_unique<Dense<T>>(flat, spec.classes, true, spec.init, b.rng()));
}

}  // namespace

template <class T>
Mlp<T> build_mlp(const MlpSpec& spec, Rng& rng) {
  validate(spec);
  Builder<T> b(spec, rng);
  if (!spec.arch.empty()) {
    build_convolutional(spec, b);
    return b.take();
  }
  std::int64_t in = spec.inputs;
  for (std::int64_t width : spec.hidden) {
    b.block(std::make_unique<Dense<T>>(in, width, b.bias(), spec.init, rng), width, 1, true);
    in = width;
  }
  b.net().add(std::make_unique<Dense<T>>(in, spec.classes, true, spec.init, rng));
  return b.take();
}

template Mlp<float> build_mlp(const MlpSpec&, Rng&);
template Mlp<double> build_mlp(const MlpSpec&, Rng&);

}  // namespace bnorm::nn
