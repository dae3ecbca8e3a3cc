// BatchNormOptions: the PyTorch preset and the validation of every option.
#include <fmt/format.h>

#include <cmath>

#include "bnorm/batch_norm.hpp"
#include "bnorm/error.hpp"

namespace bnorm {

BatchNormOptions BatchNormOptions::pytorch(std::optional<double> momentum, bool affine,
                                           bool track_running_stats) {
  BatchNormOptions o;
  o.center = affine;
  o.scale = affine;
  o.track_running_stats = track_running_stats;
  o.axis = 1;
  o.momentum = momentum;
  o.momentum_convention = MomentumConvention::kPyTorch;
  o.epsilon = 1e-5;
  o.moving_variance = MovingVariance::kUnbiased;
  o.single_value = SingleValuePolicy::kError;
  return o;
}

void BatchNormOptions::validate() const {
  const auto fail = [](const std::string& message) { throw Error("BatchNorm: " + message); };
  if (momentum && (!(*momentum >= 0) || !(*momentum <= 1))) {
    fail(
        fmt::format("momentum = {}; expected a value in [0, 1] (the weight of the old moving "
                    "average, Keras, or of the batch, PyTorch) or nullopt (cumulative average)",
                    *momentum));
  }
  if (!(renorm_momentum >= 0) || !(renorm_momentum <= 1)) {
    fail(fmt::format("renorm_momentum = {}; expected a value in [0, 1]", renorm_momentum));
  }
  if (!(epsilon >= 0) || !std::isfinite(epsilon)) {
    fail(fmt::format("epsilon = {}; expected a finite value >= 0", epsilon));
  }
  if (renorm && !(epsilon > 0)) {
    fail(
        fmt::format("epsilon = {} with renorm = true; expected epsilon > 0 (sqrt(epsilon) bounds "
                    "the renorm divisor away from 0)",
                    epsilon));
  }
  const RenormClipping& k = renorm_clipping;
  if (std::isnan(k.rmax) || std::isnan(k.rmin) || std::isnan(k.dmax)) {
    fail(
        fmt::format("renorm_clipping = {{rmax = {}, rmin = {}, dmax = {}}}; expected numbers, "
                    "not NaN",
                    k.rmax, k.rmin, k.dmax));
  }
  if (k.rmin < 0) {
    fail(
        fmt::format("renorm_clipping.rmin = {}; expected rmin >= 0 (r is a ratio of standard "
                    "deviations)",
                    k.rmin));
  }
  if (k.rmax < k.rmin) {
    fail(
        fmt::format("renorm_clipping: rmax = {} < rmin = {}; expected rmax >= rmin (an empty "
                    "interval for r)",
                    k.rmax, k.rmin));
  }
  if (k.dmax < 0) {
    fail(
        fmt::format("renorm_clipping.dmax = {}; expected dmax >= 0 (d is clipped to [-dmax, "
                    "dmax])",
                    k.dmax));
  }
  if (virtual_batch_size < 0) {
    fail(fmt::format("virtual_batch_size = {}; expected 0 (off) or a positive number of samples",
                     virtual_batch_size));
  }
  if (virtual_batch_size > 0 && renorm) {
    fail(
        fmt::format("virtual_batch_size = {} with renorm = true; expected one of them: renorm "
                    "corrections per virtual batch are not supported",
                    virtual_batch_size));
  }
  if (renorm && !track_running_stats) {
    fail(
        "renorm = true with track_running_stats = false; expected track_running_stats = true "
        "(renorm corrects towards the moving statistics)");
  }
  beta_regularizer.validate("beta_regularizer");
  gamma_regularizer.validate("gamma_regularizer");
  beta_constraint.validate("beta_constraint");
  gamma_constraint.validate("gamma_constraint");
  beta_initializer.validate("beta_initializer");
  gamma_initializer.validate("gamma_initializer");
  moving_mean_initializer.validate("moving_mean_initializer");
  moving_variance_initializer.validate("moving_variance_initializer");
}

}  // namespace bnorm
