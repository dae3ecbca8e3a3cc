// BatchNorm: the batch normalization layer, with every behaviour of Keras BatchNormalization and
// of PyTorch BatchNorm{1,2,3}d selectable by name. docs/semantics.md has the convention table,
// the formulas and worked examples; this header has the contract.
//
// The layer owns state (parameters, moving statistics, gradients); the math is the library's
// phases: functional forward_training and backward where they fit, otherwise the statistics
// phase the functional API itself runs (moments, synchronized merge, single-value rule) followed
// by normalize, with the layer's own steps between them (renorm's r and d, the adjustment, the
// moving-average update) computed in the layer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bnorm/comm.hpp"
#include "bnorm/constraints.hpp"
#include "bnorm/geometry.hpp"
#include "bnorm/initializers.hpp"
#include "bnorm/phases.hpp"
#include "bnorm/regularizers.hpp"

namespace bnorm {

// Direction of the momentum in the moving-average update (the one convention most often mixed
// up when porting, see docs/semantics.md):
//   kKeras:   moving  = m * moving + (1 - m) * batch      (Keras default m = 0.99)
//   kPyTorch: running = (1 - m) * running + m * batch     (PyTorch default m = 0.1)
enum class MomentumConvention { kKeras, kPyTorch };

// Which batch variance the moving variance averages (normalization always uses the biased one):
//   kBiased:   var_B = M2 / M             (Keras 3, tf.keras non-fused)
//   kUnbiased: var_B * M / (M - 1)        (PyTorch, tf.keras fused); M = 1 keeps var_B = 0
enum class MovingVariance { kBiased, kUnbiased };

// What a training batch with exactly one value per channel does:
//   kOutputBeta: y = beta (x_hat = 0), statistics finite: mean = x, variance 0     (Keras)
//   kError:      bnorm::Error "Expected more than 1 value per channel when training" (PyTorch)
enum class SingleValuePolicy { kOutputBeta, kError };

// Which samples (along axis 0, N of them) form the G = N / V virtual batches of V samples:
//   kContiguous: virtual batch k = samples k*V .. k*V + V - 1 (Hoffer et al.; tf.split)
//   kStrided:    virtual batch j = samples j, j + G, j + 2G, ... (tf.keras, which reshapes the
//                batch to [V, G, ...] and reduces over the first axis)
enum class VirtualBatchLayout { kContiguous, kStrided };

// Keras renorm_clipping: r is clipped to [rmin, rmax], d to [-dmax, dmax]. A missing key in
// Keras means no clipping, which is the default here.
struct RenormClipping {
  double rmax = std::numeric_limits<double>::infinity();
  double rmin = 0;
  double dmax = std::numeric_limits<double>::infinity();
};

// The clipping schedule of the batch renormalization paper (Ioffe 2017, section 4): plain batch
// norm (rmax = 1, dmax = 0) for `plain_steps`, then rmax grows linearly to `rmax_final` at
// `rmax_step` and dmax to `dmax_final` at `dmax_step`; rmin = 1 / rmax throughout.
struct RenormSchedule {
  std::int64_t plain_steps = 5000;
  double rmax_final = 3;
  std::int64_t rmax_step = 40000;
  double dmax_final = 5;
  std::int64_t dmax_step = 25000;
};
// Requires: 0 <= plain_steps < rmax_step, plain_steps < dmax_step, rmax_final >= 1,
// dmax_final >= 0 (bnorm::Error otherwise). step < 0 is treated as 0.
[[nodiscard]] RenormClipping renorm_clipping_schedule(std::int64_t step,
                                                      const RenormSchedule& schedule = {});

// tf.keras `adjustment`: given the input shape, fill per-channel (scale, bias) (pre-filled with 1
// and 0, `channels` values each) applied to x_hat in training only: x_hat -> scale*x_hat + bias,
// before gamma and beta. Treated as constants by backward (no gradient flows into them).
using Adjustment = std::function<void(std::span<const std::int64_t> shape, std::span<double> scale,
                                      std::span<double> bias)>;

// Options, named and defaulted as Keras names them; BatchNormOptions::pytorch() gives PyTorch's
// defaults and conventions. Every convention is its own option, so any mix is expressible.
struct BatchNormOptions {
  // Channel axis of the input shape; negative counts from the end. PyTorch: 1.
  int axis = -1;
  // Moving-average factor, read with `momentum_convention`. nullopt = cumulative moving average
  // with factor 1 / num_batches_tracked (PyTorch momentum=None), in either convention.
  std::optional<double> momentum = 0.99;
  MomentumConvention momentum_convention = MomentumConvention::kKeras;
  double epsilon = 1e-3;
  bool center = true;  // learn beta (false: beta = 0, no parameter)
  bool scale = true;   // learn gamma (false: gamma = 1, no parameter)
  Initializer beta_initializer = Initializer::zeros();
  Initializer gamma_initializer = Initializer::ones();
  Initializer moving_mean_initializer = Initializer::zeros();
  Initializer moving_variance_initializer = Initializer::ones();
  Regularizer beta_regularizer;
  Regularizer gamma_regularizer;
  Constraint beta_constraint;
  Constraint gamma_constraint;
  // Batch renormalization (tf.keras renorm=True); see docs/semantics.md.
  bool renorm = false;
  RenormClipping renorm_clipping;
  double renorm_momentum = 0.99;  // always in the Keras direction (a Keras-only option)
  // Ghost batch norm: 0 = off; otherwise the number of samples (along axis 0) per virtual batch.
  std::int64_t virtual_batch_size = 0;
  VirtualBatchLayout virtual_batch_layout = VirtualBatchLayout::kContiguous;
  Adjustment adjustment;
  // false: the layer always runs in inference mode and nothing (state or gradient) updates.
  bool trainable = true;
  // Statistics over every rank's batch through `communicator` (LocalCommunicator when null).
  bool synchronized = false;
  std::shared_ptr<const Communicator> communicator;
  // PyTorch track_running_stats: false = no moving statistics; batch statistics always, also in
  // inference mode.
  bool track_running_stats = true;
  MovingVariance moving_variance = MovingVariance::kBiased;
  SingleValuePolicy single_value = SingleValuePolicy::kOutputBeta;
  // Non-finite guard (pytorch#88474): when a batch's mean or variance is NaN or infinite in any
  // channel, skip the whole moving-statistics update, count it and report it.
  bool skip_nonfinite_updates = false;

  // Keras defaults (the member initializers above).
  static BatchNormOptions keras() { return {}; }
  // PyTorch BatchNorm{1,2,3}d(num_features, eps=1e-5, momentum, affine, track_running_stats):
  // axis 1, momentum in PyTorch's direction, eps 1e-5, unbiased running variance, error on one
  // value per channel, weight 1, bias 0; affine = false is center = scale = false.
  static BatchNormOptions pytorch(std::optional<double> momentum = 0.1, bool affine = true,
                                  bool track_running_stats = true);

  // Throws bnorm::Error naming the option, its value and why it is invalid.
  void validate() const;
};

// What a load found (PyTorch load_state_dict's _IncompatibleKeys): the layer's state tensors the
// file lacks and the file's tensors under the prefix that the layer has no use for, both with the
// file's naming and the prefix, in the layer's slot order (missing) and the file's order
// (unexpected). Always empty after a strict load (it throws instead).
struct LoadResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
};

// What one forward call did to the moving statistics.
struct ForwardResult {
  bool updated_statistics = false;  // moving statistics (and num_batches_tracked) changed
  bool skipped_nonfinite = false;   // the non-finite guard skipped the update
};

// The population statistics recalibrate() computes, per channel, from K batches with m_k values
// per channel (m_k = samples x spatial positions), batch means mu_k, biased variances s2_k:
//   kAlgorithm2 (Ioffe & Szegedy 2015, Algorithm 2, step 10, with m_k in place of the paper's
//     one m): E[x] = (1/K) sum mu_k,  Var[x] = (1/K) sum m_k/(m_k - 1) s2_k  (s2_k when m_k = 1).
//     What PyTorch's cumulative average (momentum=None) of running statistics reaches.
//   kPooled: the exact statistics of all values together: E[x] = sum m_k mu_k / N, Var[x] =
//     M2 / (N - 1) with M2 = sum (x - E[x])^2 over all N = sum m_k values (Chan merges in batch
//     order). Differs from kAlgorithm2 by the spread between batch means (and for unequal m_k).
enum class PopulationStatistics { kAlgorithm2, kPooled };

// One batch for recalibrate(): values and shape, laid out as forward() takes them.
template <class T>
struct BatchRef {
  std::span<const T> x;
  std::span<const std::int64_t> shape;
};

// The layer. T is float or double (the functional API's two types).
//
// Caching: a training forward keeps only per-channel values (batch statistics, renorm r and d,
// adjustment) and the geometry; backward takes `x` again, which must be the same values as the
// last forward's input (so y may overwrite x only if the caller keeps a copy).
// Gradients are assigned by backward, never accumulated (regularizer terms included).
// Synchronized: statistics and parameter gradients are global (identical on every rank); do not
// all-reduce gamma/beta gradients again.
template <class T>
class BasicBatchNorm {
 public:
  // Requires: channels >= 1 and valid options (bnorm::Error naming the option otherwise).
  // Ensures: parameters and moving statistics hold their initializers' values.
  explicit BasicBatchNorm(std::int64_t channels, BatchNormOptions options = {});

  // y = BN(x) for a tensor of `shape` whose channel axis is options().axis.
  // training && trainable: batch statistics (per virtual batch if virtual_batch_size), moving
  //   statistics updated, values cached for backward.
  // otherwise: moving statistics (batch statistics when track_running_stats is false); no state
  //   changes.
  // y may alias x. Throws bnorm::Error for a bad shape, a channel count other than channels(),
  // a virtual batch size that does not divide shape[0], or one value per channel under kError.
  ForwardResult forward(std::span<const T> x, std::span<const std::int64_t> shape, std::span<T> y,
                        bool training);

  // The moving-statistics update of a training forward, without computing y (PyTorch
  // torch.batch_norm_update_stats): the same batch statistics (per virtual batch, synchronized
  // when the layer is) and the same update, so a training forward followed by this call on
  // another batch equals two training forwards in its state. batch_mean()/batch_variance()
  // report the batch's statistics (biased variance, as torch returns). Invalidates the cache of
  // the last forward (backward throws until the next forward). trainable == false: nothing
  // changes. Throws bnorm::Error as forward does, and without moving statistics
  // (track_running_stats false).
  ForwardResult update_statistics(std::span<const T> x, std::span<const std::int64_t> shape);

  // BN recalibration: replaces moving_mean and moving_variance with the population statistics of
  // `batches` (see PopulationStatistics), computed in double from exact per-batch moments;
  // num_batches_tracked = number of batches. Renorm: moving_stddev = sqrt(variance + eps), the
  // renorm_mean / renorm_stddev are left alone. Virtual batches play no part (inference ignores
  // them). Local: with synchronized = true, every rank recalibrates from its own batches.
  // Throws bnorm::Error for no batches, a batch of a bad shape (naming its index), a batch with
  // no values, or without moving statistics. Nothing changes unless every batch is accepted.
  void recalibrate(std::span<const BatchRef<T>> batches,
                   PopulationStatistics kind = PopulationStatistics::kAlgorithm2);

  // Backward of the last forward: dx, and gamma_grad()/beta_grad() (regularizer terms added).
  // Requires: a forward before; x and dy of that forward's shape. dx may alias dy.
  // After an inference-mode forward: dx = gamma / sqrt(moving_var + eps) * dy.
  // trainable == false: parameter gradients are 0.
  void backward(std::span<const T> x, std::span<const T> dy, std::span<T> dx);

  // Keras layer.losses: gamma_regularizer.loss(gamma) + beta_regularizer.loss(beta).
  [[nodiscard]] double regularization_loss() const;
  // Projects gamma and beta with their constraints; call after each optimizer update.
  void apply_constraints();

  // Inference folding into a preceding Dense (weights [C][K], rows = output channels) or Conv
  // (weights [C][...], first dim = output channels): W' = a * W, bias' = a * (bias - mean) + beta,
  // a = gamma / sqrt(moving_var + eps), computed in double. Requires weights.size() a non-zero
  // multiple of channels(), bias.size() == channels(), and moving statistics.
  void fold_into(std::span<T> weights, std::span<T> bias) const;

  // Safetensors state: gamma, beta, moving_mean, moving_variance (those that exist), renorm_mean,
  // renorm_stddev, moving_stddev (renorm), num_batches_tracked (I64 scalar); metadata bnorm.format
  // and the conventions. Written atomically.
  void save(const std::filesystem::path& path) const;
  // Loads Keras names, or PyTorch names (weight, bias, running_mean, running_var,
  // num_batches_tracked) each optionally preceded by `prefix` (e.g. "bn1."). Every tensor's shape
  // and dtype is checked; a file mixing the two namings is refused; nothing changes unless the
  // whole file is accepted.
  // strict = false (PyTorch load_state_dict(strict=False)): a missing tensor keeps its value and
  // an unexpected one is skipped, both reported in the result; a shape or dtype mismatch, a mix
  // of namings, a bad num_batches_tracked or conflicting metadata still refuse the whole file.
  LoadResult load(const std::filesystem::path& path, const std::string& prefix = "",
                  bool strict = true);

  [[nodiscard]] std::int64_t channels() const { return channels_; }
  [[nodiscard]] const BatchNormOptions& options() const { return options_; }
  void set_communicator(std::shared_ptr<const Communicator> communicator);

  // Parameters (empty when scale / center is false) and their gradients.
  [[nodiscard]] std::span<T> gamma() { return gamma_; }
  [[nodiscard]] std::span<const T> gamma() const { return gamma_; }
  [[nodiscard]] std::span<T> beta() { return beta_; }
  [[nodiscard]] std::span<const T> beta() const { return beta_; }
  [[nodiscard]] std::span<const T> gamma_grad() const { return gamma_grad_; }
  [[nodiscard]] std::span<const T> beta_grad() const { return beta_grad_; }
  [[nodiscard]] std::span<T> gamma_grad() { return gamma_grad_; }
  [[nodiscard]] std::span<T> beta_grad() { return beta_grad_; }
  // Moving statistics (empty when track_running_stats is false).
  [[nodiscard]] std::span<T> moving_mean() { return moving_mean_; }
  [[nodiscard]] std::span<const T> moving_mean() const { return moving_mean_; }
  [[nodiscard]] std::span<T> moving_variance() { return moving_variance_; }
  [[nodiscard]] std::span<const T> moving_variance() const { return moving_variance_; }
  // Renorm state (empty unless renorm).
  [[nodiscard]] std::span<T> renorm_mean() { return renorm_mean_; }
  [[nodiscard]] std::span<T> renorm_stddev() { return renorm_stddev_; }
  [[nodiscard]] std::span<T> moving_stddev() { return moving_stddev_; }
  [[nodiscard]] std::span<const T> renorm_mean() const { return renorm_mean_; }
  [[nodiscard]] std::span<const T> renorm_stddev() const { return renorm_stddev_; }
  [[nodiscard]] std::span<const T> moving_stddev() const { return moving_stddev_; }
  // Last training forward's statistics (averaged over virtual batches) and renorm corrections.
  [[nodiscard]] std::span<const T> batch_mean() const { return batch_mean_avg_; }
  [[nodiscard]] std::span<const T> batch_variance() const { return batch_variance_avg_; }
  [[nodiscard]] std::span<const double> renorm_r() const { return r_; }
  [[nodiscard]] std::span<const double> renorm_d() const { return d_; }

  [[nodiscard]] std::int64_t num_batches_tracked() const { return num_batches_tracked_; }
  void set_num_batches_tracked(std::int64_t n) { num_batches_tracked_ = n; }
  // Batches whose update the non-finite guard skipped.
  [[nodiscard]] std::int64_t nonfinite_batches() const { return nonfinite_batches_; }

 private:
  enum class Mode { kNone, kBatch, kMoving };
  void forward_group(std::span<const T> x, std::span<T> y, std::size_t group, bool train);
  ForwardResult update_moving_statistics();
  [[nodiscard]] Geometry checked_geometry(std::span<const std::int64_t> shape,
                                          std::size_t values) const;
  [[nodiscard]] const Communicator* sync_comm() const;

  std::int64_t channels_;
  BatchNormOptions options_;
  std::vector<T> gamma_, beta_, gamma_grad_, beta_grad_;
  std::vector<T> moving_mean_, moving_variance_;
  std::vector<T> renorm_mean_, renorm_stddev_, moving_stddev_;
  std::int64_t num_batches_tracked_ = 0;
  std::int64_t nonfinite_batches_ = 0;

  // Cache of the last forward (per-channel values only).
  Mode mode_ = Mode::kNone;
  std::vector<std::int64_t> shape_;
  Geometry geometry_{};  // of one group (virtual batch), or of the whole batch
  std::int64_t groups_ = 1;
  bool affine_effective_ = false;               // gamma_eff / beta_eff differ from gamma / beta
  std::vector<T> batch_mean_, batch_variance_;  // [group][channel], what normalized
  std::vector<double> counts_;                  // [group]: values per channel (global)
  std::vector<T> batch_mean_avg_, batch_variance_avg_;
  std::vector<double> r_, d_, adj_scale_, adj_bias_;
  std::vector<T> gamma_eff_, beta_eff_;

  // Working memory reused across calls (per-channel sizes), so a steady state allocates nothing.
  std::vector<double> mean_, variance_, sum_dy_, sum_dy_xhat_, group_dy_, group_dy_xhat_;
  std::vector<T> group_dgamma_, group_dbeta_, zeros_;
  std::vector<double> update_scratch_;  // update_moving_statistics: mean, var, biased var
  // kStrided virtual batches: x, y / dy, dx gathered into contiguous virtual-batch order.
  std::vector<T> layout_x_, layout_y_, layout_dy_;
};

using BatchNorm = BasicBatchNorm<float>;
using BatchNormDouble = BasicBatchNorm<double>;

extern template class BasicBatchNorm<float>;
extern template class BasicBatchNorm<double>;

}  // namespace bnorm
