// Percentiles by linear interpolation between closest ranks (NumPy's default "linear").
#include <algorithm>
#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/nn/metrics.hpp"

namespace bnorm::nn {

double percentile(std::span<const double> values, double q) {
  if (values.empty()) throw Error("percentile: no values; expected at least one");
  if (!(q >= 0 && q <= 100)) throw Error(fmt::format("percentile: q {}; expected [0, 100]", q));
  std::vector<double> v(values.begin(), values.end());
  const double pos = q / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(lo), v.end());
  const double a = v[lo];
  const double b =
      hi == lo ? a : *std::min_element(v.begin() + static_cast<std::ptrdiff_t>(lo) + 1, v.end());
  return a + (b - a) * (pos - static_cast<double>(lo));
}

}  // namespace bnorm::nn
