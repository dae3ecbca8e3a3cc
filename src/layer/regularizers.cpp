// Keras regularizers: loss and gradient, accumulated in double.
#include "bnorm/regularizers.hpp"

#include <fmt/format.h>

#include <cmath>

#include "bnorm/error.hpp"

namespace bnorm {
namespace {

template <class T>
double loss_impl(const Regularizer& r, std::span<const T> w) {
  double l1 = 0, l2 = 0;
  for (const T v : w) {
    l1 += std::abs(static_cast<double>(v));
    l2 += static_cast<double>(v) * static_cast<double>(v);
  }
  return r.l1 * l1 + r.l2 * l2;
}

template <class T>
void add_gradient_impl(const Regularizer& r, std::span<const T> w, std::span<T> grad) {
  if (w.size() != grad.size()) {
    throw Error(
        fmt::format("Regularizer::add_gradient: grad has {} values; expected {} (one per "
                    "weight)",
                    grad.size(), w.size()));
  }
  for (std::size_t i = 0; i < w.size(); ++i) {
    const double v = static_cast<double>(w[i]);
    const double sign = v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0);
    grad[i] = static_cast<T>(static_cast<double>(grad[i]) + r.l1 * sign + 2 * r.l2 * v);
  }
}

}  // namespace

double Regularizer::loss(std::span<const float> w) const {
  return loss_impl(*this, w);
}
double Regularizer::loss(std::span<const double> w) const {
  return loss_impl(*this, w);
}
void Regularizer::add_gradient(std::span<const float> w, std::span<float> grad) const {
  add_gradient_impl(*this, w, grad);
}
void Regularizer::add_gradient(std::span<const double> w, std::span<double> grad) const {
  add_gradient_impl(*this, w, grad);
}

void Regularizer::validate(const char* what) const {
  if (!(l1 >= 0) || !std::isfinite(l1) || !(l2 >= 0) || !std::isfinite(l2)) {
    throw Error(
        fmt::format("BatchNorm: {} = {{l1 = {}, l2 = {}}}; expected finite coefficients "
                    ">= 0 (a negative penalty would reward large weights)",
                    what, l1, l2));
  }
}

}  // namespace bnorm
