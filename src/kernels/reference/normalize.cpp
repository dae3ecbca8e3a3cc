// Reference normalization: y = (x - mean) * scale + shift evaluated in double, then the
// epilogue (+ z, max(0, .)) in double, rounded once to T. The scales are the scalar formula
// (coefficients.hpp: scale_of), one channel at a time.
#include <algorithm>

#include "kernels/coefficients.hpp"
#include "kernels/reference/reference.hpp"

namespace bnorm::kernels::reference {

template <class T>
void scales(const double* variance, const T* gamma, double epsilon, double* scale,
            std::size_t channels) {
  for (std::size_t c = 0; c < channels; ++c) {
    scale[c] = scale_of(value_or(gamma, static_cast<std::int64_t>(c), 1.0), variance[c], epsilon);
  }
}

template <class T>
void normalize(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k,
               const Epilogue<T>& epilogue) {
  const std::int64_t count = g.count_per_channel();
  const Activation activation = epilogue.activation;
  for (std::int64_t c = 0; c < g.channels; ++c) {
    for (std::int64_t j = 0; j < count; ++j) {
      const std::int64_t at = offset_of(g, c, j);
      double v = (static_cast<double>(x[at]) - k.mean[c]) * k.scale[c] + k.shift[c];
      if (activation == Activation::kAddRelu) v += static_cast<double>(epilogue.z[at]);
      if (activation != Activation::kNone) v = std::max(v, 0.0);
      y[at] = static_cast<T>(v);
    }
  }
}

template void scales<float>(const double*, const float*, double, double*, std::size_t);
template void scales<double>(const double*, const double*, double, double*, std::size_t);
template void normalize<float>(const float*, float*, const Geometry&,
                               const NormalizeCoefficients<float>&, const Epilogue<float>&);
template void normalize<double>(const double*, double*, const Geometry&,
                                const NormalizeCoefficients<double>&, const Epilogue<double>&);

}  // namespace bnorm::kernels::reference
