// Statistics without output: update_statistics (torch.batch_norm_update_stats) and
// recalibrate (the paper's Algorithm 2 population statistics, or the exact pooled ones).
//
// update_statistics runs the layer's statistics phase (detail::batch_statistics, as forward);
// recalibrate pools per-channel moments from the phases API (channel_moments, merge). Neither
// normalizes; both and share the moving-statistics update with forward
// (update_moving_statistics), so the conventions stay in one place.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <cmath>

#include "bnorm/batch_norm.hpp"
#include "bnorm/error.hpp"
#include "statistics.hpp"
#include "virtual_batch_layout.hpp"

namespace bnorm {

template <class T>
ForwardResult BasicBatchNorm<T>::update_statistics(std::span<const T> x,
                                                   std::span<const std::int64_t> shape) {
  if (!options_.track_running_stats) {
    throw Error(
        "BatchNorm::update_statistics: the layer has no moving statistics "
        "(track_running_stats = false); expected a layer that tracks them");
  }
  const Geometry g = checked_geometry(shape, x.size());
  mode_ = Mode::kNone;  // the cache no longer describes a forward
  if (!options_.trainable) return {};
  shape_.assign(shape.begin(), shape.end());

  // Virtual batches exactly as forward splits them.
  groups_ = 1;
  if (const std::int64_t v = options_.virtual_batch_size; v > 0) {
    const int rank = static_cast<int>(shape.size());
    const int axis = options_.axis < 0 ? options_.axis + rank : options_.axis;
    if (axis == 0 || shape[0] % v != 0) {
      throw Error(
          fmt::format("BatchNorm::update_statistics: virtual_batch_size = {} with shape [{}] "
                      "and channel axis {}; expected the batch on axis 0, a multiple of it",
                      v, fmt::join(shape, ", "), axis));
    }
    groups_ = shape[0] / v;
  }
  const Communicator* comm = sync_comm();
  const bool gather = comm != nullptr && comm->size() > 1;
  if (gather && groups_ > 1) {
    // One collective per virtual batch: the ranks must agree on their number (as forward).
    const auto groups = static_cast<double>(groups_);
    std::array<double, 2> sums = {groups, groups * groups};
    comm->allreduce_sum(sums);
    if (sums[0] * sums[0] != static_cast<double>(comm->size()) * sums[1]) {
      throw Error(fmt::format(
          "BatchNorm::update_statistics: the ranks hold different numbers of virtual batches "
          "(this rank {}); expected the same multiple of virtual_batch_size on every rank",
          groups_));
    }
  }
  const Geometry group{g.outer / groups_, g.channels, g.inner};
  const auto C = static_cast<std::size_t>(channels_);
  const auto G = static_cast<std::size_t>(groups_);
  const auto n = static_cast<std::size_t>(group.size());
  batch_mean_.resize(G * C);
  batch_variance_.resize(G * C);
  counts_.assign(G, 0.0);
  std::span<const T> xs = x;
  if (G > 1 && options_.virtual_batch_layout == VirtualBatchLayout::kStrided) {
    layout_x_.resize(x.size());
    detail::gather_strided_virtual_batches(x, std::span<T>(layout_x_), shape[0], groups_);
    xs = layout_x_;
  }
  // The layer's statistics phase, as forward runs it (one per virtual batch).
  const detail::SingleValue single_value = options_.single_value == SingleValuePolicy::kError
                                               ? detail::SingleValue::kReject
                                               : detail::SingleValue::kAccept;
  const detail::Caller caller{"BatchNorm", shape, "single_value = kError, PyTorch's convention"};
  mean_.resize(C);
  variance_.resize(C);
  for (std::size_t k = 0; k < G; ++k) {
    counts_[k] =
        detail::batch_statistics<T>(caller, xs.subspan(k * n, n), group, comm, single_value, mean_,
                                    variance_, std::span<T>(batch_mean_.data() + k * C, C),
                                    std::span<T>(batch_variance_.data() + k * C, C));
  }
  for (std::size_t c = 0; c < C; ++c) {
    double m = 0, v = 0;
    for (std::size_t k = 0; k < G; ++k) {
      m += static_cast<double>(batch_mean_[k * C + c]);
      v += static_cast<double>(batch_variance_[k * C + c]);
    }
    batch_mean_avg_[c] = static_cast<T>(m / static_cast<double>(G));
    batch_variance_avg_[c] = static_cast<T>(v / static_cast<double>(G));
  }
  return update_moving_statistics();
}

template <class T>
void BasicBatchNorm<T>::recalibrate(std::span<const BatchRef<T>> batches,
                                    PopulationStatistics kind) {
  if (!options_.track_running_stats) {
    throw Error(
        "BatchNorm::recalibrate: the layer has no moving statistics (track_running_stats = "
        "false); expected a layer that tracks them");
  }
  if (batches.empty()) {
    throw Error("BatchNorm::recalibrate: no batches; expected at least one");
  }
  const auto C = static_cast<std::size_t>(channels_);
  std::vector<Moments> batch(C), pooled(C);
  std::vector<double> mean_sum(C, 0.0), var_sum(C, 0.0);
  for (std::size_t b = 0; b < batches.size(); ++b) {
    Geometry g;
    try {
      g = checked_geometry(batches[b].shape, batches[b].x.size());
    } catch (const Error& e) {
      throw Error(fmt::format("BatchNorm::recalibrate: batch {}: {}", b, e.what()));
    }
    if (g.count_per_channel() == 0) {
      throw Error(fmt::format(
          "BatchNorm::recalibrate: batch {} (shape [{}]) has no values; expected a non-empty "
          "batch (its mean would be undefined)",
          b, fmt::join(batches[b].shape, ", ")));
    }
    channel_moments(batches[b].x, g, batch);
    for (std::size_t c = 0; c < C; ++c) {
      const double m = batch[c].count;
      mean_sum[c] += batch[c].mean;
      var_sum[c] += m > 1 ? batch[c].m2 / (m - 1) : 0.0;
      pooled[c] = merge(pooled[c], batch[c]);
    }
  }
  const auto K = static_cast<double>(batches.size());
  for (std::size_t c = 0; c < C; ++c) {
    double mean = mean_sum[c] / K;
    double var = var_sum[c] / K;
    if (kind == PopulationStatistics::kPooled) {
      const double n = pooled[c].count;
      mean = pooled[c].mean;
      var = n > 1 ? pooled[c].m2 / (n - 1) : 0.0;
    }
    moving_mean_[c] = static_cast<T>(mean);
    moving_variance_[c] = static_cast<T>(var);
    if (options_.renorm) moving_stddev_[c] = static_cast<T>(std::sqrt(var + options_.epsilon));
  }
  num_batches_tracked_ = static_cast<std::int64_t>(batches.size());
}

template ForwardResult BasicBatchNorm<float>::update_statistics(std::span<const float>,
                                                                std::span<const std::int64_t>);
template ForwardResult BasicBatchNorm<double>::update_statistics(std::span<const double>,
                                                                 std::span<const std::int64_t>);
template void BasicBatchNorm<float>::recalibrate(std::span<const BatchRef<float>>,
                                                 PopulationStatistics);
template void BasicBatchNorm<double>::recalibrate(std::span<const BatchRef<double>>,
                                                  PopulationStatistics);

}  // namespace bnorm
