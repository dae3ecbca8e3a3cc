// Reference fused forward: y = max(0, (x - mean) * scale + shift [+ z]), all in double,
// rounded once to T.
#include "kernels/reference/epilogue.hpp"

#include <algorithm>

#include "kernels/reference/reference.hpp"

namespace bnorm::kernels::reference {

template <class T>
void normalize_relu(const T* x, const T* z, T* y, const Geometry& g,
                    const NormalizeCoefficients<T>& k) {
  const std::int64_t count = g.count_per_channel();
  for (std::int64_t c = 0; c < g.channels; ++c) {
    for (std::int64_t j = 0; j < count; ++j) {
      const std::int64_t at = offset_of(g, c, j);
      double v = (static_cast<double>(x[at]) - k.mean[c]) * k.scale[c] + k.shift[c];
      if (z != nullptr) v += static_cast<double>(z[at]);
      y[at] = static_cast<T>(std::max(v, 0.0));
    }
  }
}

template void normalize_relu<float>(const float*, const float*, float*, const Geometry&,
                                    const NormalizeCoefficients<float>&);
template void normalize_relu<double>(const double*, const double*, double*, const Geometry&,
                                     const NormalizeCoefficients<double>&);

}  // namespace bnorm::kernels::reference
