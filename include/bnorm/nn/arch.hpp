// Architecture strings: a network's hidden layers in one short text, e.g. "c16,c16,p,c32,p,f128".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bnorm::nn {

// One hidden item of a network.
//   c<N>[k<K>][s<S>]  Conv2d with N output channels, K x K kernel (default 3), stride S
//                     (default 1), padding K / 2: a conv block (BN and activation per the model)
//   p[<K>][s<S>]      MaxPool2d, K x K windows (default 2), stride S (default K)
//   f<N>              Dense with N units: a fully connected block (BN, activation, dropout)
struct LayerSpec {
  enum class Kind { kConv, kPool, kDense };
  Kind kind = Kind::kDense;
  std::int64_t units = 0;  // conv: output channels; dense: units; pool: unused
  std::int64_t kernel = 0;
  std::int64_t stride = 0;
  bool operator==(const LayerSpec&) const = default;
};

// Parses a comma-separated list of the items above. Throws bnorm::Error naming the item, its
// position and the grammar for anything else (an empty list included).
[[nodiscard]] std::vector<LayerSpec> parse_arch(std::string_view text);
// The canonical text of a list (defaults spelled out only where they differ): parse_arch's
// inverse up to defaults.
[[nodiscard]] std::string format_arch(const std::vector<LayerSpec>& arch);

}  // namespace bnorm::nn
