// Finite-difference gradient checks in double: the oracle for every backward in bnorm::nn.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <span>
#include <string>

#include "bnorm/nn/rng.hpp"
#include "bnorm/nn/tensor.hpp"

namespace bnorm::nn::testing {

inline Tensor<double> random_tensor(std::int64_t rows, std::int64_t cols, Rng& rng,
                                    double scale = 1.0, double shift = 0.0) {
  Tensor<double> t(rows, cols);
  for (double& v : t.span()) v = shift + scale * rng.normal();
  return t;
}

// Central differences of f with respect to every entry of `values`, compared with `analytic`.
// Tolerance: |fd - analytic| <= tol * max(1, |fd|, |analytic|). Returns the worst relative
// error so that a test can also report it.
inline double expect_gradient(const std::string& what, std::span<double> values,
                              std::span<const double> analytic, const std::function<double()>& f,
                              double tol = 1e-7, double h = 1e-5) {
  EXPECT_EQ(values.size(), analytic.size()) << what;
  double worst = 0;
  int nonzero = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double saved = values[i];
    values[i] = saved + h;
    const double up = f();
    values[i] = saved - h;
    const double down = f();
    values[i] = saved;
    const double fd = (up - down) / (2 * h);
    const double scale = std::max({1.0, std::abs(fd), std::abs(analytic[i])});
    const double err = std::abs(fd - analytic[i]) / scale;
    worst = std::max(worst, err);
    nonzero += std::abs(fd) > 1e-9 ? 1 : 0;
    EXPECT_LE(err, tol) << what << "[" << i << "]: finite difference " << fd << ", backward "
                        << analytic[i];
  }
  // Zero-trust: a gradient that is (almost) all zeros proves nothing.
  EXPECT_GT(nonzero, static_cast<int>(values.size()) * 7 / 10) << what << ": degenerate gradient";
  return worst;
}

// sum(r * y): a scalar whose gradient with respect to y is r.
inline double dot(const Tensor<double>& r, const Tensor<double>& y) {
  double s = 0;
  for (std::int64_t i = 0; i < y.size(); ++i) s += r.data()[i] * y.data()[i];
  return s;
}

}  // namespace bnorm::nn::testing
