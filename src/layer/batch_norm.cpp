// BatchNorm forward and backward: which statistics, which coefficients, which entry point.
//
// Training, per group (the whole batch, or one virtual batch of samples along axis 0):
//   mean_B, var_B      batch statistics (global over ranks when synchronized)
//   r, d               renorm corrections (1, 0 without renorm)
//   s_adj, b_adj       adjustment (1, 0 without one)
//   y = gamma * (s_adj * (r * x_hat + d) + b_adj) + beta
//     = gamma_eff * x_hat + beta_eff,
//   gamma_eff = gamma * s_adj * r,   beta_eff = gamma * (s_adj * d + b_adj) + beta.
// With r, d, s_adj, b_adj constants (stop_gradient in tf.keras), backward is plain batch-norm
// backward with gamma_eff, and
//   dgamma = s_adj * r * sum(dy * x_hat) + (s_adj * d + b_adj) * sum(dy),   dbeta = sum(dy).
//
// Entry points: the plain case (no renorm, no adjustment, not one value per channel, not
// synchronized) is functional forward_training. Everything else runs the statistics phase
// (src/statistics.hpp: moments -> all-gather + merge -> single-value rule -> mean, variance) and
// then normalize, because the layer needs what forward_training does not return: the global
// count (for the unbiased moving variance) and the statistics before normalizing (for r and d).
// The tests check both routes bitwise equal.
// Backward is functional backward (with the communicator when synchronized), except for a
// Keras single-value batch, which forward_training/backward reject: there the phases are used
// with count 1 (x_hat = 0, dx = 0).
#include "bnorm/batch_norm.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "bnorm/error.hpp"
#include "bnorm/functional.hpp"
#include "bnorm/phases.hpp"
#include "renorm.hpp"
#include "statistics.hpp"
#include "virtual_batch_layout.hpp"

namespace bnorm {
namespace {

const LocalCommunicator kLocal;

template <class T>
std::span<const T> cspan(const std::vector<T>& v) {
  return {v.data(), v.size()};
}

}  // namespace

template <class T>
BasicBatchNorm<T>::BasicBatchNorm(std::int64_t channels, BatchNormOptions options)
    : channels_(channels), options_(std::move(options)) {
  if (channels < 1) {
    throw Error(fmt::format("BatchNorm: channels = {}; expected >= 1", channels));
  }
  options_.validate();
  const auto C = static_cast<std::size_t>(channels);
  if (options_.scale) {
    gamma_.resize(C);
    gamma_grad_.resize(C);
    options_.gamma_initializer.fill(std::span<T>(gamma_));
  }
  if (options_.center) {
    beta_.resize(C);
    beta_grad_.resize(C);
    options_.beta_initializer.fill(std::span<T>(beta_));
  }
  if (options_.track_running_stats) {
    moving_mean_.resize(C);
    moving_variance_.resize(C);
    options_.moving_mean_initializer.fill(std::span<T>(moving_mean_));
    options_.moving_variance_initializer.fill(std::span<T>(moving_variance_));
  }
  if (options_.renorm) {
    // tf.keras: renorm_mean starts as moving_mean, renorm_stddev and moving_stddev as
    // sqrt(moving_variance).
    renorm_mean_ = moving_mean_;
    renorm_stddev_.resize(C);
    for (std::size_t c = 0; c < C; ++c) {
      renorm_stddev_[c] = static_cast<T>(std::sqrt(static_cast<double>(moving_variance_[c])));
    }
    moving_stddev_ = renorm_stddev_;
  }
  r_.assign(C, 1.0);
  d_.assign(C, 0.0);
  adj_scale_.assign(C, 1.0);
  adj_bias_.assign(C, 0.0);
  batch_mean_avg_.assign(C, T(0));
  batch_variance_avg_.assign(C, T(0));
}

template <class T>
void BasicBatchNorm<T>::set_communicator(std::shared_ptr<const Communicator> communicator) {
  options_.communicator = std::move(communicator);
}

template <class T>
const Communicator* BasicBatchNorm<T>::sync_comm() const {
  if (!options_.synchronized) return nullptr;
  return options_.communicator ? options_.communicator.get() : &kLocal;
}

template <class T>
Geometry BasicBatchNorm<T>::checked_geometry(std::span<const std::int64_t> shape,
                                             std::size_t values) const {
  Geometry g;
  try {
    g = geometry_of(shape, options_.axis);
  } catch (const Error& e) {
    throw Error(fmt::format("BatchNorm: input shape [{}] with options.axis = {}: {}",
                            fmt::join(shape, ", "), options_.axis, e.what()));
  }
  if (g.channels != channels_) {
    throw Error(
        fmt::format("BatchNorm: input shape [{}] has {} channels on axis {}; expected {} "
                    "(the layer's channels)",
                    fmt::join(shape, ", "), g.channels, options_.axis, channels_));
  }
  if (static_cast<std::int64_t>(values) != g.size()) {
    throw Error(fmt::format("BatchNorm: x has {} values; expected {} for shape [{}]", values,
                            g.size(), fmt::join(shape, ", ")));
  }
  return g;
}

template <class T>
ForwardResult BasicBatchNorm<T>::forward(std::span<const T> x, std::span<const std::int64_t> shape,
                                         std::span<T> y, bool training) {
  const Geometry g = checked_geometry(shape, x.size());
  if (y.size() != x.size()) {
    throw Error(fmt::format("BatchNorm: x has {} and y {} values; expected {} for shape [{}]",
                            x.size(), y.size(), g.size(), fmt::join(shape, ", ")));
  }
  const bool train = training && options_.trainable;
  const auto C = static_cast<std::size_t>(channels_);
  // Until this forward succeeds there is nothing for backward to use.
  mode_ = Mode::kNone;
  shape_.assign(shape.begin(), shape.end());
  ForwardResult result;

  if (!train && options_.track_running_stats) {
    // Inference with the moving statistics: one affine map per channel.
    mode_ = Mode::kMoving;
    geometry_ = g;
    groups_ = 1;
    forward_inference(x, y, g, cspan(gamma_), cspan(beta_), cspan(moving_mean_),
                      cspan(moving_variance_), static_cast<T>(options_.epsilon));
    return result;
  }

  // Batch statistics, per virtual batch in training.
  groups_ = 1;
  if (train && options_.virtual_batch_size > 0) {
    const std::int64_t v = options_.virtual_batch_size;
    const int rank = static_cast<int>(shape.size());
    const int axis = options_.axis < 0 ? options_.axis + rank : options_.axis;
    if (axis == 0) {
      throw Error(
          fmt::format("BatchNorm: virtual_batch_size = {} with channel axis 0 of shape "
                      "[{}]; expected the batch on axis 0 and channels on another axis",
                      v, fmt::join(shape, ", ")));
    }
    if (shape[0] % v != 0) {
      throw Error(
          fmt::format("BatchNorm: virtual_batch_size = {} does not divide the batch size "
                      "{} (shape [{}]); expected a divisor of shape[0]",
                      v, shape[0], fmt::join(shape, ", ")));
    }
    groups_ = shape[0] / v;
    // Synchronized: virtual batch k of every rank is normalized with the statistics of all
    // ranks' k-th virtual batches, one collective per virtual batch. Every rank must hold the
    // same number of virtual batches, or the collectives would not pair up (and could hang):
    // agree on it first, with one collective, so that every rank throws the same error.
    if (const Communicator* comm = sync_comm(); comm != nullptr && comm->size() > 1) {
      const auto groups = static_cast<double>(groups_);
      std::array<double, 2> counts = {groups, groups * groups};
      comm->allreduce_sum(counts);
      const double ranks = static_cast<double>(comm->size());
      if (counts[0] * counts[0] != ranks * counts[1]) {
        throw Error(fmt::format(
            "BatchNorm: virtual_batch_size = {} with synchronized = true: the ranks hold different "
            "numbers of virtual batches (this rank {}, {} in total over {} ranks); expected every "
            "rank's batch size to be the same multiple of virtual_batch_size",
            v, groups_, counts[0], comm->size()));
      }
    }
  }
  // Samples along axis 0 are contiguous blocks of outer / groups rows (axis 0 is not the
  // channel axis, so it is part of outer).
  geometry_ = groups_ > 1 ? Geometry{g.outer / groups_, g.channels, g.inner} : g;

  std::fill(adj_scale_.begin(), adj_scale_.end(), 1.0);
  std::fill(adj_bias_.begin(), adj_bias_.end(), 0.0);
  if (train && options_.adjustment) options_.adjustment(shape, adj_scale_, adj_bias_);
  std::fill(r_.begin(), r_.end(), 1.0);
  std::fill(d_.begin(), d_.end(), 0.0);

  const auto G = static_cast<std::size_t>(groups_);
  batch_mean_.resize(G * C);
  batch_variance_.resize(G * C);
  counts_.assign(G, 0.0);
  const auto n = static_cast<std::size_t>(geometry_.size());
  // kStrided (tf.keras): virtual batches gathered into contiguous order, y scattered back.
  const bool strided = G > 1 && options_.virtual_batch_layout == VirtualBatchLayout::kStrided;
  if (strided) {
    layout_x_.resize(x.size());
    layout_y_.resize(x.size());
    detail::gather_strided_virtual_batches(x, std::span<T>(layout_x_), shape[0], groups_);
  }
  const std::span<const T> xs = strided ? cspan(layout_x_) : x;
  const std::span<T> ys = strided ? std::span<T>(layout_y_) : y;
  for (std::size_t k = 0; k < G; ++k) {
    forward_group(xs.subspan(k * n, n), ys.subspan(k * n, n), k, train);
  }
  if (strided) detail::scatter_strided_virtual_batches(cspan(layout_y_), y, shape[0], groups_);
  mode_ = Mode::kBatch;
  // The statistics reported (and averaged into the moving ones): the mean over virtual batches.
  for (std::size_t c = 0; c < C; ++c) {
    double m = 0, v = 0;
    for (std::size_t k = 0; k < G; ++k) {
      m += static_cast<double>(batch_mean_[k * C + c]);
      v += static_cast<double>(batch_variance_[k * C + c]);
    }
    batch_mean_avg_[c] = static_cast<T>(m / static_cast<double>(G));
    batch_variance_avg_[c] = static_cast<T>(v / static_cast<double>(G));
  }
  if (train && options_.track_running_stats) result = update_moving_statistics();
  return result;
}

template <class T>
void BasicBatchNorm<T>::forward_group(std::span<const T> x, std::span<T> y, std::size_t k,
                                      bool train) {
  const Geometry& g = geometry_;
  const auto C = static_cast<std::size_t>(channels_);
  const std::span<T> mean_out(batch_mean_.data() + k * C, C);
  const std::span<T> var_out(batch_variance_.data() + k * C, C);
  const T eps = static_cast<T>(options_.epsilon);
  const Communicator* comm = sync_comm();
  const double local_count = static_cast<double>(g.count_per_channel());
  const bool renorm = train && options_.renorm;
  const bool adjust = train && static_cast<bool>(options_.adjustment);
  affine_effective_ = renorm || adjust;

  if (!renorm && !adjust && comm == nullptr && local_count != 1) {
    counts_[k] = local_count;
    forward_training(x, y, g, cspan(gamma_), cspan(beta_), eps, mean_out, var_out);
    return;
  }

  // The statistics phase, then normalize with what the layer makes of the statistics.
  const detail::SingleValue single_value = options_.single_value == SingleValuePolicy::kError
                                               ? detail::SingleValue::kReject
                                               : detail::SingleValue::kAccept;
  const detail::Caller caller{"BatchNorm", shape_, "single_value = kError, PyTorch's convention"};
  std::vector<double>& mean = mean_;
  std::vector<double>& variance = variance_;
  mean.resize(C);
  variance.resize(C);
  counts_[k] = detail::batch_statistics<T>(caller, x, g, comm, single_value, mean, variance,
                                           mean_out, var_out);
  if (renorm) {
    for (std::size_t c = 0; c < C; ++c) {
      const auto rd = layer::renorm_correction(
          mean[c], variance[c], static_cast<double>(renorm_mean_[c]),
          static_cast<double>(renorm_stddev_[c]), options_.epsilon, options_.renorm_clipping);
      r_[c] = rd.r;
      d_[c] = rd.d;
    }
  }
  if (affine_effective_) {
    gamma_eff_.resize(C);
    beta_eff_.resize(C);
    for (std::size_t c = 0; c < C; ++c) {
      const double gamma = gamma_.empty() ? 1.0 : static_cast<double>(gamma_[c]);
      const double beta = beta_.empty() ? 0.0 : static_cast<double>(beta_[c]);
      gamma_eff_[c] = static_cast<T>(gamma * adj_scale_[c] * r_[c]);
      beta_eff_[c] = static_cast<T>(gamma * (adj_scale_[c] * d_[c] + adj_bias_[c]) + beta);
    }
    normalize(x, y, g, cspan(gamma_eff_), cspan(beta_eff_), mean, variance, options_.epsilon);
  } else {
    normalize(x, y, g, cspan(gamma_), cspan(beta_), mean, variance, options_.epsilon);
  }
}

template <class T>
void BasicBatchNorm<T>::backward(std::span<const T> x, std::span<const T> dy, std::span<T> dx) {
  if (mode_ == Mode::kNone) {
    throw Error(
        "BatchNorm::backward: no forward before (or the last one failed); expected a successful "
        "forward, then backward");
  }
  const std::int64_t total = geometry_.size() * groups_;
  if (static_cast<std::int64_t>(x.size()) != total ||
      static_cast<std::int64_t>(dy.size()) != total ||
      static_cast<std::int64_t>(dx.size()) != total) {
    throw Error(
        fmt::format("BatchNorm::backward: x, dy, dx have {}, {}, {} values; expected {} "
                    "(the last forward's shape [{}])",
                    x.size(), dy.size(), dx.size(), total, fmt::join(shape_, ", ")));
  }
  const auto C = static_cast<std::size_t>(channels_);
  const T eps = static_cast<T>(options_.epsilon);
  const Communicator* comm = sync_comm();
  // Per channel: sum dy * x_hat and sum dy over every group (and rank when synchronized).
  std::vector<double>& sum_dy_xhat = sum_dy_xhat_;
  std::vector<double>& sum_dy = sum_dy_;
  sum_dy_xhat.assign(C, 0.0);
  sum_dy.assign(C, 0.0);

  if (mode_ == Mode::kMoving) {
    // y = a * x + b with constant a = gamma / sqrt(moving_var + eps): dx = a * dy, which is
    // forward_inference applied to dy with mean 0 and no shift. The sums come first: dx may
    // alias dy.
    backward_sums(x, dy, geometry_, cspan(moving_mean_), cspan(moving_variance_), options_.epsilon,
                  sum_dy, sum_dy_xhat);
    if (comm != nullptr) {  // one collective for both sums
      std::vector<double>& both = group_dy_;
      both.resize(2 * C);
      std::copy(sum_dy.begin(), sum_dy.end(), both.begin());
      std::copy(sum_dy_xhat.begin(), sum_dy_xhat.end(), both.begin() + static_cast<long>(C));
      comm->allreduce_sum(both);
      std::copy(both.begin(), both.begin() + static_cast<long>(C), sum_dy.begin());
      std::copy(both.begin() + static_cast<long>(C), both.end(), sum_dy_xhat.begin());
    }
    zeros_.assign(C, T(0));
    forward_inference(dy, dx, geometry_, cspan(gamma_), {}, cspan(zeros_), cspan(moving_variance_),
                      eps);
  } else {
    const std::span<const T> gamma = affine_effective_ ? cspan(gamma_eff_) : cspan(gamma_);
    const auto n = static_cast<std::size_t>(geometry_.size());
    std::vector<T>& dgamma = group_dgamma_;
    std::vector<T>& dbeta = group_dbeta_;
    std::vector<double>& s_dy = group_dy_;
    std::vector<double>& s_dy_xhat = group_dy_xhat_;
    dgamma.resize(C);
    dbeta.resize(C);
    s_dy.resize(C);
    s_dy_xhat.resize(C);
    const bool strided =
        groups_ > 1 && options_.virtual_batch_layout == VirtualBatchLayout::kStrided;
    if (strided) {  // as in forward: contiguous virtual batches, dx scattered back
      layout_x_.resize(x.size());
      layout_dy_.resize(x.size());
      layout_y_.resize(x.size());
      detail::gather_strided_virtual_batches(x, std::span<T>(layout_x_), shape_[0], groups_);
      detail::gather_strided_virtual_batches(dy, std::span<T>(layout_dy_), shape_[0], groups_);
    }
    const std::span<const T> xs = strided ? cspan(layout_x_) : x;
    const std::span<const T> dys = strided ? cspan(layout_dy_) : dy;
    const std::span<T> dxs = strided ? std::span<T>(layout_y_) : dx;
    for (std::size_t k = 0; k < static_cast<std::size_t>(groups_); ++k) {
      const auto xk = xs.subspan(k * n, n);
      const auto dyk = dys.subspan(k * n, n);
      const auto dxk = dxs.subspan(k * n, n);
      const std::span<const T> mean(batch_mean_.data() + k * C, C);
      const std::span<const T> var(batch_variance_.data() + k * C, C);
      if (counts_[k] == 1) {
        // Keras single-value batch: the functional API rejects it; the phases give x_hat = 0.
        backward_sums(xk, dyk, geometry_, mean, var, options_.epsilon, s_dy, s_dy_xhat);
        if (comm != nullptr && comm->size() > 1) {
          comm->allreduce_sum(s_dy);
          comm->allreduce_sum(s_dy_xhat);
        }
        backward_input(xk, dyk, geometry_, gamma, mean, var, options_.epsilon, s_dy, s_dy_xhat, 1.0,
                       dxk);
        for (std::size_t c = 0; c < C; ++c) {
          sum_dy[c] += s_dy[c];
          sum_dy_xhat[c] += s_dy_xhat[c];
        }
        continue;
      }
      if (comm != nullptr) {
        bnorm::backward(xk, dyk, geometry_, gamma, mean, var, eps, dxk, std::span<T>(dgamma),
                        std::span<T>(dbeta), *comm);
      } else {
        bnorm::backward(xk, dyk, geometry_, gamma, mean, var, eps, dxk, std::span<T>(dgamma),
                        std::span<T>(dbeta));
      }
      for (std::size_t c = 0; c < C; ++c) {
        sum_dy[c] += static_cast<double>(dbeta[c]);
        sum_dy_xhat[c] += static_cast<double>(dgamma[c]);
      }
    }
    if (strided) detail::scatter_strided_virtual_batches(cspan(layout_y_), dx, shape_[0], groups_);
  }

  // Parameter gradients (the transform's constants r, d, s_adj, b_adj are 1, 0 unless set).
  const bool train_params = options_.trainable;
  for (std::size_t c = 0; c < gamma_grad_.size(); ++c) {
    const double g = mode_ == Mode::kBatch ? adj_scale_[c] * r_[c] * sum_dy_xhat[c] +
                                                 (adj_scale_[c] * d_[c] + adj_bias_[c]) * sum_dy[c]
                                           : sum_dy_xhat[c];
    gamma_grad_[c] = train_params ? static_cast<T>(g) : T(0);
  }
  for (std::size_t c = 0; c < beta_grad_.size(); ++c) {
    beta_grad_[c] = train_params ? static_cast<T>(sum_dy[c]) : T(0);
  }
  if (train_params) {
    if (!gamma_.empty()) options_.gamma_regularizer.add_gradient(cspan(gamma_), gamma_grad_);
    if (!beta_.empty()) options_.beta_regularizer.add_gradient(cspan(beta_), beta_grad_);
  }
}

template <class T>
double BasicBatchNorm<T>::regularization_loss() const {
  return options_.gamma_regularizer.loss(cspan(gamma_)) +
         options_.beta_regularizer.loss(cspan(beta_));
}

template <class T>
void BasicBatchNorm<T>::apply_constraints() {
  options_.gamma_constraint.apply(std::span<T>(gamma_));
  options_.beta_constraint.apply(std::span<T>(beta_));
}

template class BasicBatchNorm<float>;
template class BasicBatchNorm<double>;

}  // namespace bnorm
