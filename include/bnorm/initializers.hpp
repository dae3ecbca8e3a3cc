// Initializers for the layer's parameters and moving statistics (Keras names and defaults).
#pragma once

#include <cstdint>
#include <span>

namespace bnorm {

// constant(v) fills v; zeros() and ones() are constant(0) and constant(1).
// random_uniform(lo, hi, seed): lo + (hi - lo) * u, u uniform in [0, 1) (Keras defaults -0.05,
// 0.05); random_normal(mean, stddev, seed): Box-Muller on the same generator (Keras defaults 0,
// 0.05). The generator is splitmix64 seeded with `seed`, so values are identical on every
// platform and standard library.
struct Initializer {
  enum class Kind { kConstant, kRandomUniform, kRandomNormal };

  Kind kind = Kind::kConstant;
  double a = 0;  // constant value, uniform lower bound or normal mean
  double b = 0;  // uniform upper bound or normal standard deviation
  std::uint64_t seed = 0;

  static Initializer zeros() { return constant(0); }
  static Initializer ones() { return constant(1); }
  static Initializer constant(double value) { return {Kind::kConstant, value, 0, 0}; }
  static Initializer random_uniform(double minval = -0.05, double maxval = 0.05,
                                    std::uint64_t seed = 0) {
    return {Kind::kRandomUniform, minval, maxval, seed};
  }
  static Initializer random_normal(double mean = 0, double stddev = 0.05, std::uint64_t seed = 0) {
    return {Kind::kRandomNormal, mean, stddev, seed};
  }

  // Assigns every element of out.
  void fill(std::span<float> out) const;
  void fill(std::span<double> out) const;
  // Throws bnorm::Error naming `what` (e.g. "gamma_initializer") for a non-finite parameter,
  // maxval < minval or stddev < 0.
  void validate(const char* what) const;
};

}  // namespace bnorm
