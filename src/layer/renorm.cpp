// Batch renormalization: the r, d corrections and the paper's clipping schedule.
#include "renorm.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "bnorm/error.hpp"

namespace bnorm {
namespace layer {

RenormCorrection renorm_correction(double batch_mean, double batch_variance, double renorm_mean,
                                   double renorm_stddev, double epsilon,
                                   const RenormClipping& clipping) {
  const double sigma = std::sqrt(batch_variance + epsilon);
  const double s = std::max(renorm_stddev, std::sqrt(epsilon));
  // min/max rather than std::clamp: rmin == rmax is allowed and NaN must pass through.
  const double r = std::min(std::max(sigma / s, clipping.rmin), clipping.rmax);
  const double d =
      std::min(std::max((batch_mean - renorm_mean) / s, -clipping.dmax), clipping.dmax);
  return {r, d};
}

}  // namespace layer

RenormClipping renorm_clipping_schedule(std::int64_t step, const RenormSchedule& s) {
  if (s.plain_steps < 0 || s.rmax_step <= s.plain_steps || s.dmax_step <= s.plain_steps ||
      !(s.rmax_final >= 1) || !(s.dmax_final >= 0) || !std::isfinite(s.rmax_final) ||
      !std::isfinite(s.dmax_final)) {
    throw Error(fmt::format(
        "renorm_clipping_schedule: schedule {{plain_steps = {}, rmax_final = {} at {}, dmax_final "
        "= {} at {}}}; expected 0 <= plain_steps < rmax_step and < dmax_step, finite rmax_final "
        ">= 1 and dmax_final >= 0",
        s.plain_steps, s.rmax_final, s.rmax_step, s.dmax_final, s.dmax_step));
  }
  // Fraction of the way from the end of plain BN to the final value, in [0, 1].
  const auto progress = [&](std::int64_t end) {
    const double t = static_cast<double>(std::max(step, s.plain_steps) - s.plain_steps) /
                     static_cast<double>(end - s.plain_steps);
    return std::min(t, 1.0);
  };
  RenormClipping c;
  c.rmax = 1 + (s.rmax_final - 1) * progress(s.rmax_step);
  c.rmin = 1 / c.rmax;
  c.dmax = s.dmax_final * progress(s.dmax_step);
  return c;
}

}  // namespace bnorm
