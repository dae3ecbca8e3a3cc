// The reference kernels for 16-bit storage (half.hpp): the double formulas of the float
// reference (stats.cpp, normalize.cpp, backward.cpp) on exactly widened 16-bit values, each
// result rounded to float and then to the storage type.
#include "kernels/reference/half.hpp"

#include <algorithm>
#include <vector>

#include "kernels/coefficients.hpp"
#include "kernels/reference/reference.hpp"

namespace bnorm::kernels::reference::half {
namespace {

template <class T16>
double wide(T16 v) {
  return static_cast<double>(static_cast<float>(v));
}

// The rounding the kernels make: their float result, narrowed on store.
template <class T16>
T16 narrow(double v) {
  return T16(static_cast<float>(v));
}

}  // namespace

template <class T16>
void moments(const T16* x, const Geometry& g, Moments* moments) {
  const std::int64_t count = g.count_per_channel();
  for (std::int64_t c = 0; c < g.channels; ++c) {
    if (count == 0) {
      moments[c] = Moments{};
      continue;
    }
    double sum = 0;
    for (std::int64_t j = 0; j < count; ++j) sum += wide(x[offset_of(g, c, j)]);
    const double n = static_cast<double>(count);
    const double mean = sum / n;
    double residual_sum = 0;
    double square_sum = 0;
    for (std::int64_t j = 0; j < count; ++j) {
      const double r = wide(x[offset_of(g, c, j)]) - mean;
      residual_sum += r;
      square_sum += r * r;
    }
    const double m2 = square_sum - residual_sum * residual_sum / n;
    moments[c] = Moments{n, mean + residual_sum / n, m2 > 0 ? m2 : 0.0};
  }
}

template <class T16>
void normalize(const T16* x, const T16* z, T16* y, const Geometry& g, const double* mean,
               const double* scale, const double* shift, bool relu) {
  const std::int64_t count = g.count_per_channel();
  for (std::int64_t c = 0; c < g.channels; ++c) {
    for (std::int64_t j = 0; j < count; ++j) {
      const std::int64_t at = offset_of(g, c, j);
      double v = (wide(x[at]) - mean[c]) * scale[c] + shift[c];
      if (z != nullptr) v += wide(z[at]);
      if (relu) v = std::max(v, 0.0);
      y[at] = narrow<T16>(v);
    }
  }
}

template <class T16>
void backward_sums(const T16* x, const T16* dy, const Geometry& g, const float* mean,
                   double* sum_dy, double* sum_dy_xc) {
  const std::int64_t count = g.count_per_channel();
  for (std::int64_t c = 0; c < g.channels; ++c) {
    double s = 0;
    double sx = 0;
    const double m = static_cast<double>(mean[c]);
    for (std::int64_t j = 0; j < count; ++j) {
      const std::int64_t at = offset_of(g, c, j);
      const double d = wide(dy[at]);
      s += d;
      sx += d * (wide(x[at]) - m);
    }
    sum_dy[c] = s;
    sum_dy_xc[c] = sx;
  }
}

template <class T16>
void backward_input(const T16* x, const T16* dy, T16* dx, const Geometry& g, const double* mean,
                    const double* k_dy, const double* k_xc, const double* k_0) {
  const std::int64_t count = g.count_per_channel();
  for (std::int64_t c = 0; c < g.channels; ++c) {
    for (std::int64_t j = 0; j < count; ++j) {
      const std::int64_t at = offset_of(g, c, j);
      const double centred = wide(x[at]) - mean[c];
      dx[at] = narrow<T16>(k_dy[c] * wide(dy[at]) + k_xc[c] * centred + k_0[c]);
    }
  }
}

template <class T16>
void forward_training(const T16* x, T16* y, const Geometry& g, const float* gamma,
                      const float* beta, float epsilon, float* batch_mean, float* batch_variance) {
  const auto C = static_cast<std::size_t>(g.channels);
  std::vector<Moments> m(C);
  moments(x, g, m.data());
  std::vector<double> mean(C), scale(C), shift(C);
  for (std::size_t c = 0; c < C; ++c) {
    const double variance = m[c].count > 0 ? m[c].m2 / m[c].count : 0.0;
    mean[c] = m[c].mean;
    batch_mean[c] = static_cast<float>(mean[c]);
    batch_variance[c] = static_cast<float>(variance);
    const double gamma_c = gamma == nullptr ? 1.0 : static_cast<double>(gamma[c]);
    scale[c] = gamma_c * invstd_of(variance, static_cast<double>(epsilon));
    shift[c] = beta == nullptr ? 0.0 : static_cast<double>(beta[c]);
  }
  normalize(x, static_cast<const T16*>(nullptr), y, g, mean.data(), scale.data(), shift.data(),
            false);
}

template <class T16>
void forward_inference(const T16* x, T16* y, const Geometry& g, const float* gamma,
                       const float* beta, const float* mean, const float* variance, float epsilon) {
  const auto C = static_cast<std::size_t>(g.channels);
  std::vector<double> mean_d(C), scale(C), shift(C);
  for (std::size_t c = 0; c < C; ++c) {
    mean_d[c] = static_cast<double>(mean[c]);
    const double gamma_c = gamma == nullptr ? 1.0 : static_cast<double>(gamma[c]);
    scale[c] = gamma_c * invstd_of(static_cast<double>(variance[c]), static_cast<double>(epsilon));
    shift[c] = beta == nullptr ? 0.0 : static_cast<double>(beta[c]);
  }
  normalize(x, static_cast<const T16*>(nullptr), y, g, mean_d.data(), scale.data(), shift.data(),
            false);
}

template <class T16>
void backward(const T16* x, const T16* dy, const Geometry& g, const float* gamma, const float* mean,
              const float* variance, float epsilon, T16* dx, float* dgamma, float* dbeta) {
  const auto C = static_cast<std::size_t>(g.channels);
  std::vector<double> sum_dy(C), sum_dy_xc(C);
  backward_sums(x, dy, g, mean, sum_dy.data(), sum_dy_xc.data());
  const auto count = static_cast<double>(g.count_per_channel());
  std::vector<double> mean_d(C), k_dy(C), k_xc(C), k_0(C);
  for (std::size_t c = 0; c < C; ++c) {
    const double invstd = invstd_of(static_cast<double>(variance[c]), static_cast<double>(epsilon));
    const double sum_dy_xhat = sum_dy_xc[c] * invstd;
    if (dgamma != nullptr) dgamma[c] = static_cast<float>(sum_dy_xhat);
    if (dbeta != nullptr) dbeta[c] = static_cast<float>(sum_dy[c]);
    const double a = (gamma == nullptr ? 1.0 : static_cast<double>(gamma[c])) * invstd;
    mean_d[c] = static_cast<double>(mean[c]);
    k_dy[c] = a;
    k_xc[c] = count > 0 ? -a * invstd * (sum_dy_xhat / count) : 0.0;
    k_0[c] = count > 0 ? -a * (sum_dy[c] / count) : 0.0;
  }
  backward_input(x, dy, dx, g, mean_d.data(), k_dy.data(), k_xc.data(), k_0.data());
}

#define BNORM_HALF_REFERENCE(T16)                                                                  \
  template void moments<T16>(const T16*, const Geometry&, Moments*);                               \
  template void normalize<T16>(const T16*, const T16*, T16*, const Geometry&, const double*,       \
                               const double*, const double*, bool);                                \
  template void backward_sums<T16>(const T16*, const T16*, const Geometry&, const float*, double*, \
                                   double*);                                                       \
  template void backward_input<T16>(const T16*, const T16*, T16*, const Geometry&, const double*,  \
                                    const double*, const double*, const double*);                  \
  template void forward_training<T16>(const T16*, T16*, const Geometry&, const float*,             \
                                      const float*, float, float*, float*);                        \
  template void forward_inference<T16>(const T16*, T16*, const Geometry&, const float*,            \
                                       const float*, const float*, const float*, float);           \
  template void backward<T16>(const T16*, const T16*, const Geometry&, const float*, const float*, \
                              const float*, float, T16*, float*, float*);
BNORM_HALF_REFERENCE(bf16)
BNORM_HALF_REFERENCE(fp16)
#undef BNORM_HALF_REFERENCE

}  // namespace bnorm::kernels::reference::half
