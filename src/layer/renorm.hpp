// Batch renormalization corrections (Ioffe 2017, as tf.keras computes them).
#pragma once

#include "bnorm/batch_norm.hpp"

namespace bnorm::layer {

struct RenormCorrection {
  double r = 1;
  double d = 0;
};

// sigma_B = sqrt(var_B + eps); s = max(renorm_stddev, sqrt(eps)) (no division by 0 early on);
// r = clip(sigma_B / s, rmin, rmax); d = clip((mean_B - renorm_mean) / s, -dmax, dmax).
[[nodiscard]] RenormCorrection renorm_correction(double batch_mean, double batch_variance,
                                                 double renorm_mean, double renorm_stddev,
                                                 double epsilon, const RenormClipping& clipping);

}  // namespace bnorm::layer
