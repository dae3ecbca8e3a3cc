// Weight constraints for the layer's parameters, as Keras defines them (keras.constraints).
// A constraint is a projection applied after each optimizer update (BatchNorm::apply_constraints).
#pragma once

#include <span>

namespace bnorm {

// With n = ||w||_2 over the whole parameter vector (Keras axis=0 on a 1-D weight) and
// kEpsilon = 1e-7 (keras.backend.epsilon()):
//   max_norm(m):              w * clip(n, 0, m) / (kEpsilon + n)
//   non_neg():                w * (w >= 0)
//   unit_norm():              w / (kEpsilon + n)
//   min_max_norm(lo, hi, r):  w * (r * clip(n, lo, hi) + (1 - r) * n) / (kEpsilon + n)
struct Constraint {
  enum class Kind { kNone, kMaxNorm, kNonNeg, kUnitNorm, kMinMaxNorm };
  static constexpr double kEpsilon = 1e-7;

  Kind kind = Kind::kNone;
  double min_value = 0;
  double max_value = 0;
  double rate = 1;

  static Constraint none() { return {}; }
  static Constraint max_norm(double max_value = 2) { return {Kind::kMaxNorm, 0, max_value, 1}; }
  static Constraint non_neg() { return {Kind::kNonNeg, 0, 0, 1}; }
  static Constraint unit_norm() { return {Kind::kUnitNorm, 0, 0, 1}; }
  static Constraint min_max_norm(double min_value = 0, double max_value = 1, double rate = 1) {
    return {Kind::kMinMaxNorm, min_value, max_value, rate};
  }

  [[nodiscard]] bool active() const { return kind != Kind::kNone; }
  // Projects w in place (computed in double).
  void apply(std::span<float> w) const;
  void apply(std::span<double> w) const;
  // Throws bnorm::Error naming `what` (e.g. "gamma_constraint") for max_value < 0,
  // min_value < 0, min_value > max_value, rate outside [0, 1] or a non-finite parameter.
  void validate(const char* what) const;
};

}  // namespace bnorm
