// The moving-statistics update: the one step where the Keras and PyTorch conventions differ.
//
// Batch values per channel (virtual batches k = 1..G, G = 1 without ghost batch norm; n_k values
// per channel in batch k, global when synchronized):
//   mean_B = (1/G) sum_k mean_k
//   var_B  = (1/G) sum_k v_k,   v_k = var_k * n_k / (n_k - 1)  (kUnbiased, n_k > 1)
//                               v_k = var_k                    (kBiased, or n_k <= 1)
// One update per forward, whatever G (tf.keras does the same; see docs/semantics.md):
//   kKeras:      moving  = m * moving + (1 - m) * batch
//   kPyTorch:    running = (1 - m) * running + m * batch
//   cumulative:  running = (1 - 1/n) * running + (1/n) * batch,  n = num_batches_tracked (after
//                counting this batch): the plain average of every batch seen.
// Renorm (tf.keras): renorm_mean and renorm_stddev follow the batch mean and
// sqrt(var_biased + eps) with renorm_momentum (Keras direction); moving_stddev follows
// sqrt(var_B + eps) with the layer's momentum and moving_variance = max(moving_stddev^2 - eps, 0).
#include <cmath>
#include <span>

#include "bnorm/batch_norm.hpp"

namespace bnorm {
namespace {

struct Average {
  MomentumConvention convention;
  std::optional<double> momentum;
  std::int64_t n;  // batches counted so far, this one included

  [[nodiscard]] double operator()(double old, double batch) const {
    if (!momentum) {
      const double w = 1.0 / static_cast<double>(n);
      return (1 - w) * old + w * batch;
    }
    const double m = *momentum;
    if (convention == MomentumConvention::kKeras) return m * old + (1 - m) * batch;
    return (1 - m) * old + m * batch;
  }
};

}  // namespace

template <class T>
ForwardResult BasicBatchNorm<T>::update_moving_statistics() {
  ForwardResult result;
  const auto C = static_cast<std::size_t>(channels_);
  const auto G = static_cast<std::size_t>(groups_);
  // An empty batch carries no information: nothing to average in.
  if (counts_[0] == 0) return result;

  // Per-channel averages over the virtual batches, in reused working memory (no allocation per
  // training step once the layer has run).
  update_scratch_.assign(3 * C, 0.0);
  const std::span<double> mean(update_scratch_.data(), C);
  const std::span<double> var(update_scratch_.data() + C, C);
  const std::span<double> var_biased(update_scratch_.data() + 2 * C, C);
  bool finite = true;
  for (std::size_t c = 0; c < C; ++c) {
    for (std::size_t k = 0; k < G; ++k) {
      const double n = counts_[k];
      const double v = static_cast<double>(batch_variance_[k * C + c]);
      mean[c] += static_cast<double>(batch_mean_[k * C + c]);
      var_biased[c] += v;
      var[c] +=
          options_.moving_variance == MovingVariance::kUnbiased && n > 1 ? v * n / (n - 1) : v;
    }
    mean[c] /= static_cast<double>(G);
    var[c] /= static_cast<double>(G);
    var_biased[c] /= static_cast<double>(G);
    finite = finite && std::isfinite(mean[c]) && std::isfinite(var[c]);
  }
  if (!finite && options_.skip_nonfinite_updates) {
    ++nonfinite_batches_;
    result.skipped_nonfinite = true;
    return result;
  }

  ++num_batches_tracked_;
  const Average average{options_.momentum_convention, options_.momentum, num_batches_tracked_};
  const double eps = options_.epsilon;
  for (std::size_t c = 0; c < C; ++c) {
    const auto set = [](T& slot, double value) { slot = static_cast<T>(value); };
    set(moving_mean_[c], average(static_cast<double>(moving_mean_[c]), mean[c]));
    if (!options_.renorm) {
      set(moving_variance_[c], average(static_cast<double>(moving_variance_[c]), var[c]));
      continue;
    }
    const double rm = options_.renorm_momentum;
    set(renorm_mean_[c], rm * static_cast<double>(renorm_mean_[c]) + (1 - rm) * mean[c]);
    set(renorm_stddev_[c],
        rm * static_cast<double>(renorm_stddev_[c]) + (1 - rm) * std::sqrt(var_biased[c] + eps));
    set(moving_stddev_[c],
        average(static_cast<double>(moving_stddev_[c]), std::sqrt(var[c] + eps)));
    const double s = static_cast<double>(moving_stddev_[c]);
    set(moving_variance_[c], std::max(s * s - eps, 0.0));
  }
  result.updated_statistics = true;
  return result;
}

template ForwardResult BasicBatchNorm<float>::update_moving_statistics();
template ForwardResult BasicBatchNorm<double>::update_moving_statistics();

}  // namespace bnorm
