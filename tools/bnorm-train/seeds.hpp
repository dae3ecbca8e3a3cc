// Several seeds of one configuration: mean and spread of their results, and the mean curve.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "run.hpp"

namespace bnorm::train {

// Mean, sample standard deviation (n - 1; 0 for one value), minimum and maximum.
struct Spread {
  double mean = 0, std = 0, min = 0, max = 0;
  std::size_t n = 0;
};
[[nodiscard]] Spread spread_of(const std::vector<double>& values);
// "0.8812 ± 0.0031" (precision digits after the point).
[[nodiscard]] std::string format_spread(const Spread& s, int precision = 4);

// The runs of one configuration over several seeds.
struct SeedGroup {
  std::string name;
  std::vector<RunResult> runs;
  [[nodiscard]] Spread final_accuracy() const;
  [[nodiscard]] Spread final_test_loss() const;
  [[nodiscard]] Spread best_accuracy() const;
};

// Writes <path> (atomically): the CSV of the runs' logs averaged step by step (every column;
// the runs must share their evaluation steps). Returns false when they do not.
bool write_mean_csv(const std::filesystem::path& path, const SeedGroup& group);

}  // namespace bnorm::train
