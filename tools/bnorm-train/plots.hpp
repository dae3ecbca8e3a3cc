// PNG plots through gnuplot, from the CSV logs.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace bnorm::train {

struct PlotSeries {
  std::string title;
  std::filesystem::path csv;  // relative to the plot's directory
};

// Writes <dir>/<stem>.gp (atomically) and runs gnuplot in `dir`, which renders <stem>.png
// through a temporary file renamed into place (never a partial PNG). Returns false, after a
// note on stderr, when gnuplot is missing or fails: the CSVs are still there.
bool plot_accuracy(const std::filesystem::path& dir, const std::string& stem,
                   const std::vector<PlotSeries>& runs);
bool plot_percentiles(const std::filesystem::path& dir, const std::string& stem,
                      const PlotSeries& run);

}  // namespace bnorm::train
