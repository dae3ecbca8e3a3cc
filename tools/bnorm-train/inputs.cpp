// Input standardization for bnorm-train: one scaler per invocation, shared by the runs using it.
#include "inputs.hpp"

#include <fmt/format.h>

#include <memory>

#include "bnorm/error.hpp"
#include "bnorm/nn/standard_scaler.hpp"

namespace bnorm::train {

std::string inputs_suffix(std::string_view inputs) {
  return inputs == kInputsStandardize ? "_standardized" : "";
}

void attach_input_scalers(std::vector<RunOptions>& runs, const nn::Dataset& train) {
  std::shared_ptr<const StandardScaler> scaler;
  for (auto& run : runs) {
    if (run.inputs == kInputsRaw) {
      run.config.input_scaler = nullptr;
    } else if (run.inputs == kInputsStandardize) {
      if (!scaler) scaler = std::make_shared<const StandardScaler>(nn::fit_standard_scaler(train));
      run.config.input_scaler = scaler;
    } else {
      throw Error(fmt::format("--inputs {}; expected {} or {}", run.inputs, kInputsRaw,
                              kInputsStandardize));
    }
  }
}

}  // namespace bnorm::train
