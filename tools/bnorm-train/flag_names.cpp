// Field -> flag names, longest first where one is a prefix of another.
#include "flag_names.hpp"

#include <array>
#include <utility>

namespace bnorm::train {

std::string in_flag_terms(std::string message) {
  static constexpr std::array<std::pair<const char*, const char*>, 19> kFlags = {{
      {"BatchNormLayerOptions::momentum", "--bn-momentum"},
      {"BatchNormLayerOptions::epsilon", "--bn-epsilon"},
      {"BatchNormLayerOptions::renorm_rmax", "--renorm-rmax"},
      {"BatchNormLayerOptions::renorm_dmax", "--renorm-dmax"},
      {"BatchNormLayerOptions::virtual_batch", "--virtual-batch"},
      {"BatchNormLayerOptions::renorm", "--renorm"},
      {"SgdOptions::learning_rate", "--lr"},
      {"SgdOptions::momentum", "--momentum"},
      {"SgdOptions::weight_decay", "--weight-decay"},
      {"SgdOptions::lr_drops", "--lr-drop"},
      {"TrainConfig::batch", "--batch"},
      {"Batcher: batch", "--batch"},
      {"MlpSpec::hidden", "--hidden"},
      {"MlpSpec::dropout", "--dropout"},
      {"Trainer::evaluate: tracked_unit", "--track-unit"},
      {"BN placement", "--bn"},
      {"architecture '", "--arch '"},
      {"pass the dataset directory DIR", "pass --data DIR"},
      {"dataset directory ", "--data "},
  }};
  for (const auto& [field, flag] : kFlags) {
    const std::string from = field;
    for (std::size_t at = message.find(from); at != std::string::npos;
         at = message.find(from, at + std::char_traits<char>::length(flag))) {
      message.replace(at, from.size(), flag);
    }
  }
  return message;
}

}  // namespace bnorm::train
