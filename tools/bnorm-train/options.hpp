// The options of one training run, as the command line gives them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "bnorm/nn/trainer.hpp"

namespace bnorm::train {

enum class ProgressMode { kAuto, kBar, kLines, kNone };

struct RunOptions {
  std::string name = "run";  // the run's label in tables and plots
  nn::TrainConfig config;
  std::int64_t steps = 50000;
  std::int64_t eval_every = 100;
  std::int64_t eval_limit = 0;  // evaluate on the first N test images; 0: all
  std::int64_t track_unit = 0;  // the last-hidden-layer unit whose input percentiles are logged
  std::int64_t checkpoint_every = 0;
  bool resume = false;
  std::filesystem::path out;
  std::string inputs = "raw";  // "raw" or "standardize" (inputs.hpp)
};

// Everything that determines the results (not where they go, how many steps, the threads or
// the checkpoint cadence): a resumed run must have the same.
[[nodiscard]] nlohmann::json fingerprint(const RunOptions& options);
// The whole configuration for run.json.
[[nodiscard]] nlohmann::json to_json(const RunOptions& options);

}  // namespace bnorm::train
