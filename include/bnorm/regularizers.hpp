// Weight regularizers for the layer's parameters, as Keras defines them (keras.regularizers).
#pragma once

#include <span>

namespace bnorm {

// loss(w) = l1 * sum |w| + l2 * sum w^2      (Keras L1, L2, L1L2)
// d loss / dw = l1 * sign(w) + 2 * l2 * w    (sign(0) = 0, as TensorFlow's gradient of |w|)
// A default-constructed Regularizer is "none": both coefficients 0.
struct Regularizer {
  double l1 = 0;
  double l2 = 0;

  // Keras defaults: L1(0.01), L2(0.01), L1L2(0, 0).
  static Regularizer none() { return {}; }
  static Regularizer l1_only(double l1 = 0.01) { return {l1, 0}; }
  static Regularizer l2_only(double l2 = 0.01) { return {0, l2}; }
  static Regularizer l1_l2(double l1 = 0, double l2 = 0) { return {l1, l2}; }

  [[nodiscard]] bool active() const { return l1 != 0 || l2 != 0; }
  // Requires: l1 and l2 finite and >= 0 (checked by the layer; see validate()).
  [[nodiscard]] double loss(std::span<const float> w) const;
  [[nodiscard]] double loss(std::span<const double> w) const;
  // Adds d loss / dw to grad (accumulates: grad already holds the data gradient).
  void add_gradient(std::span<const float> w, std::span<float> grad) const;
  void add_gradient(std::span<const double> w, std::span<double> grad) const;
  // Throws bnorm::Error naming `what` (e.g. "gamma_regularizer") for a negative or non-finite
  // coefficient.
  void validate(const char* what) const;
};

}  // namespace bnorm
