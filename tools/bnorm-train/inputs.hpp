// What a run's network is fed: the raw pixels scaled to [0, 1], or those standardized per pixel
// by a StandardScaler fitted on the training set (the "standard scaling" that the paper's batch
// norm generalizes to every layer).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "bnorm/nn/idx.hpp"
#include "options.hpp"

namespace bnorm::train {

inline constexpr std::string_view kInputsRaw = "raw";
inline constexpr std::string_view kInputsStandardize = "standardize";

// The run-name suffix that tells runs on standardized inputs apart ("" for raw inputs, so
// names of raw runs are what they always were).
[[nodiscard]] std::string inputs_suffix(std::string_view inputs);

// Gives every run whose inputs are "standardize" one scaler, fitted once on `train` (mean and
// scale per pixel, applied to training and test batches alike). Throws bnorm::Error for an
// unknown inputs name.
void attach_input_scalers(std::vector<RunOptions>& runs, const nn::Dataset& train);

}  // namespace bnorm::train
