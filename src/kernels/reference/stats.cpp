// Reference statistics: the textbook two-pass algorithm over each whole channel, in double.
//   mean = (1/M) sum x,   M2 = sum (x - mean)^2
// The second pass also sums the residuals r = x - mean, corrects the mean by their average and
// removes their square from M2 ((sum r)^2 / M), which cancels the rounding error of the first
// pass's mean to first order.
#include "kernels/reference/reference.hpp"

namespace bnorm::kernels::reference {

template <class T>
void moments(const T* x, const Geometry& g, Moments* moments) {
  const std::int64_t count = g.count_per_channel();
  for (std::int64_t c = 0; c < g.channels; ++c) {
    if (count == 0) {
      moments[c] = Moments{};
      continue;
    }
    double sum = 0;
    for (std::int64_t j = 0; j < count; ++j) sum += static_cast<double>(x[offset_of(g, c, j)]);
    const double n = static_cast<double>(count);
    const double mean = sum / n;
    double residual_sum = 0;
    double square_sum = 0;
    for (std::int64_t j = 0; j < count; ++j) {
      const double r = static_cast<double>(x[offset_of(g, c, j)]) - mean;
      residual_sum += r;
      square_sum += r * r;
    }
    const double m2 = square_sum - residual_sum * residual_sum / n;
    moments[c] = Moments{n, mean + residual_sum / n, m2 > 0 ? m2 : 0.0};
  }
}

template void moments<float>(const float*, const Geometry&, Moments*);
template void moments<double>(const double*, const Geometry&, Moments*);

}  // namespace bnorm::kernels::reference
