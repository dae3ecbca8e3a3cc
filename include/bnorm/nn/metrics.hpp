// Statistics the training CLI reports.
#pragma once

#include <span>

namespace bnorm::nn {

// The q-th percentile (0 <= q <= 100) with linear interpolation between closest ranks (NumPy's
// default). Takes a copy it may reorder. Throws bnorm::Error for empty values or q outside
// [0, 100].
[[nodiscard]] double percentile(std::span<const double> values, double q);

}  // namespace bnorm::nn
