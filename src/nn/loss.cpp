// Softmax cross-entropy. For one row with logits z and label t:
//   loss = logsumexp(z) - z_t,   dloss/dz = softmax(z) - onehot(t).
// logsumexp is taken around max(z) so that no exp overflows.
#include <cmath>

#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/nn/loss.hpp"

namespace bnorm::nn {

template <class T>
double softmax_cross_entropy(const Tensor<T>& logits, std::span<const std::int32_t> labels,
                             std::int64_t normalizer, Tensor<T>* dlogits) {
  const std::int64_t n = logits.rows();
  const std::int64_t k = logits.cols();
  if (static_cast<std::int64_t>(labels.size()) != n) {
    throw Error(fmt::format("softmax_cross_entropy: {} labels for {} rows; expected equal",
                            labels.size(), n));
  }
  if (normalizer <= 0) {
    throw Error(fmt::format("softmax_cross_entropy: normalizer {}; expected > 0", normalizer));
  }
  if (dlogits != nullptr) dlogits->resize(n, k);
  const double scale = 1.0 / static_cast<double>(normalizer);
  double total = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t t = labels[static_cast<std::size_t>(i)];
    if (t < 0 || t >= k) {
      throw Error(
          fmt::format("softmax_cross_entropy: label {} at row {}; expected [0, {})", t, i, k));
    }
    const T* z = logits.data() + i * k;
    double zmax = z[0];
    for (std::int64_t j = 1; j < k; ++j) zmax = std::max<double>(zmax, z[j]);
    double sum = 0;
    for (std::int64_t j = 0; j < k; ++j) sum += std::exp(double(z[j]) - zmax);
    const double log_sum = std::log(sum);
    total += log_sum + zmax - z[t];
    if (dlogits != nullptr) {
      T* g = dlogits->data() + i * k;
      for (std::int64_t j = 0; j < k; ++j) {
        const double p = std::exp(double(z[j]) - zmax - log_sum);
        g[j] = static_cast<T>((p - (j == t ? 1.0 : 0.0)) * scale);
      }
    }
  }
  return total * scale;
}

template <class T>
std::int64_t count_correct(const Tensor<T>& logits, std::span<const std::int32_t> labels) {
  std::int64_t correct = 0;
  const std::int64_t k = logits.cols();
  for (std::int64_t i = 0; i < logits.rows(); ++i) {
    const T* z = logits.data() + i * k;
    std::int64_t best = 0;
    for (std::int64_t j = 1; j < k; ++j) {
      if (z[j] > z[best]) best = j;
    }
    correct += best == labels[static_cast<std::size_t>(i)] ? 1 : 0;
  }
  return correct;
}

template double softmax_cross_entropy(const Tensor<float>&, std::span<const std::int32_t>,
                                      std::int64_t, Tensor<float>*);
template double softmax_cross_entropy(const Tensor<double>&, std::span<const std::int32_t>,
                                      std::int64_t, Tensor<double>*);
template std::int64_t count_correct(const Tensor<float>&, std::span<const std::int32_t>);
template std::int64_t count_correct(const Tensor<double>&, std::span<const std::int32_t>);

}  // namespace bnorm::nn
