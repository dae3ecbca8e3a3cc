// Reference backward, in double:
//   sums:  sum_dy = sum dy,  sum_dy_xc = sum dy * (x - mean)
//   input: dx = k_dy * dy + k_xc * (x - mean) + k_0
// with the coefficients of plan_backward (coefficients.hpp, where they are derived).
#include "kernels/reference/reference.hpp"

namespace bnorm::kernels::reference {

template <class T>
void backward_sums(const T* x, const T* dy, const Geometry& g, const T* mean, double* sum_dy,
                   double* sum_dy_xc) {
  const std::int64_t count = g.count_per_channel();
  for (std::int64_t c = 0; c < g.channels; ++c) {
    double s = 0;
    double sx = 0;
    const double m = static_cast<double>(mean[c]);
    for (std::int64_t j = 0; j < count; ++j) {
      const std::int64_t at = offset_of(g, c, j);
      const double d = static_cast<double>(dy[at]);
      s += d;
      sx += d * (static_cast<double>(x[at]) - m);
    }
    sum_dy[c] = s;
    sum_dy_xc[c] = sx;
  }
}

template <class T>
void backward_input(const T* x, const T* dy, T* dx, const Geometry& g,
                    const BackwardCoefficients<T>& k) {
  const std::int64_t count = g.count_per_channel();
  for (std::int64_t c = 0; c < g.channels; ++c) {
    for (std::int64_t j = 0; j < count; ++j) {
      const std::int64_t at = offset_of(g, c, j);
      const double centred = static_cast<double>(x[at]) - k.mean[c];
      dx[at] =
          static_cast<T>(k.k_dy[c] * static_cast<double>(dy[at]) + k.k_xc[c] * centred + k.k_0[c]);
    }
  }
}

template void backward_sums<float>(const float*, const float*, const Geometry&, const float*,
                                   double*, double*);
template void backward_sums<double>(const double*, const double*, const Geometry&, const double*,
                                    double*, double*);
template void backward_input<float>(const float*, const float*, float*, const Geometry&,
                                    const BackwardCoefficients<float>&);
template void backward_input<double>(const double*, const double*, double*, const Geometry&,
                                     const BackwardCoefficients<double>&);

}  // namespace bnorm::kernels::reference
