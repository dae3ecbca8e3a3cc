// Reference normalization: y = (x - mean) * scale + shift evaluated in double, rounded once.
#include "kernels/reference/reference.hpp"

namespace bnorm::kernels::reference {

template <class T>
void normalize(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k) {
  const std::int64_t count = g.count_per_channel();
  for (std::int64_t c = 0; c < g.channels; ++c) {
    for (std::int64_t j = 0; j < count; ++j) {
      const std::int64_t at = offset_of(g, c, j);
      const double centred = static_cast<double>(x[at]) - k.mean[c];
      y[at] = static_cast<T>(centred * k.scale[c] + k.shift[c]);
    }
  }
}

template void normalize<float>(const float*, float*, const Geometry&,
                               const NormalizeCoefficients<float>&);
template void normalize<double>(const double*, double*, const Geometry&,
                                const NormalizeCoefficients<double>&);

}  // namespace bnorm::kernels::reference
