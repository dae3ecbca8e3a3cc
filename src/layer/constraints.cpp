// Keras constraints on a 1-D weight (axis=0 covers the whole vector), computed in double.
#include "bnorm/constraints.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "bnorm/error.hpp"

namespace bnorm {
namespace {

template <class T>
void apply_impl(const Constraint& k, std::span<T> w) {
  using Kind = Constraint::Kind;
  if (k.kind == Kind::kNone) return;
  if (k.kind == Kind::kNonNeg) {
    for (T& v : w) v = v >= T(0) ? v : T(0);
    return;
  }
  double sum = 0;
  for (const T v : w) sum += static_cast<double>(v) * static_cast<double>(v);
  const double norm = std::sqrt(sum);
  double desired = 1;  // unit_norm
  if (k.kind == Kind::kMaxNorm) desired = std::clamp(norm, 0.0, k.max_value);
  if (k.kind == Kind::kMinMaxNorm) {
    desired = k.rate * std::clamp(norm, k.min_value, k.max_value) + (1 - k.rate) * norm;
  }
  const double factor = desired / (Constraint::kEpsilon + norm);
  for (T& v : w) v = static_cast<T>(static_cast<double>(v) * factor);
}

}  // namespace

void Constraint::apply(std::span<float> w) const {
  apply_impl(*this, w);
}
void Constraint::apply(std::span<double> w) const {
  apply_impl(*this, w);
}

void Constraint::validate(const char* what) const {
  const auto fail = [&](const char* why) {
    throw Error(fmt::format("BatchNorm: {} = {{min_value = {}, max_value = {}, rate = {}}}: {}",
                            what, min_value, max_value, rate, why));
  };
  if (!std::isfinite(min_value) || !std::isfinite(max_value) || !std::isfinite(rate)) {
    fail("expected finite parameters");
  }
  if (kind == Kind::kMaxNorm && max_value < 0) fail("expected max_value >= 0 (a norm bound)");
  if (kind == Kind::kMinMaxNorm) {
    if (min_value < 0) fail("expected min_value >= 0 (a norm bound)");
    if (min_value > max_value) fail("expected min_value <= max_value");
    if (rate < 0 || rate > 1) fail("expected rate in [0, 1]");
  }
}

}  // namespace bnorm
