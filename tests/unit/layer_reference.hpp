// Independent double-precision oracles for the BatchNorm layer tests: the formulas of
// REFERENCES.md sections 1-4 written out with plain loops over an [outer][channel][inner] view,
// sharing no code with the library.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace bnorm::testing {

struct View {
  std::int64_t outer = 0, channels = 0, inner = 0;
  // Index of x[o][c][i].
  [[nodiscard]] std::size_t at(std::int64_t o, std::int64_t c, std::int64_t i) const {
    return static_cast<std::size_t>((o * channels + c) * inner + i);
  }
  [[nodiscard]] std::int64_t size() const { return outer * channels * inner; }
};

inline View view_of(const std::vector<std::int64_t>& shape, int axis) {
  const int rank = static_cast<int>(shape.size());
  if (axis < 0) axis += rank;
  View v{1, shape[static_cast<std::size_t>(axis)], 1};
  for (int d = 0; d < axis; ++d) v.outer *= shape[static_cast<std::size_t>(d)];
  for (int d = axis + 1; d < rank; ++d) v.inner *= shape[static_cast<std::size_t>(d)];
  return v;
}

struct Stats {
  std::vector<double> mean, var;  // var biased
  double count = 0;
};

// Two-pass mean and biased variance per channel, in double.
template <class T>
Stats batch_stats(const std::vector<T>& x, const View& v) {
  Stats s;
  s.count = static_cast<double>(v.outer * v.inner);
  s.mean.assign(static_cast<std::size_t>(v.channels), 0.0);
  s.var.assign(static_cast<std::size_t>(v.channels), 0.0);
  for (std::int64_t c = 0; c < v.channels; ++c) {
    double sum = 0;
    for (std::int64_t o = 0; o < v.outer; ++o)
      for (std::int64_t i = 0; i < v.inner; ++i) sum += static_cast<double>(x[v.at(o, c, i)]);
    const double mean = sum / s.count;
    double m2 = 0;
    for (std::int64_t o = 0; o < v.outer; ++o)
      for (std::int64_t i = 0; i < v.inner; ++i) {
        const double d = static_cast<double>(x[v.at(o, c, i)]) - mean;
        m2 += d * d;
      }
    s.mean[static_cast<std::size_t>(c)] = mean;
    s.var[static_cast<std::size_t>(c)] = m2 / s.count;
  }
  return s;
}

// y = scale_c * (x - mean_c) / sqrt(var_c + eps) + shift_c, in double.
template <class T>
std::vector<double> affine_normalize(const std::vector<T>& x, const View& v,
                                     const std::vector<double>& mean,
                                     const std::vector<double>& var, double eps,
                                     const std::vector<double>& scale,
                                     const std::vector<double>& shift) {
  std::vector<double> y(x.size());
  for (std::int64_t o = 0; o < v.outer; ++o)
    for (std::int64_t c = 0; c < v.channels; ++c)
      for (std::int64_t i = 0; i < v.inner; ++i) {
        const auto k = static_cast<std::size_t>(c);
        y[v.at(o, c, i)] =
            scale[k] * (static_cast<double>(x[v.at(o, c, i)]) - mean[k]) / std::sqrt(var[k] + eps) +
            shift[k];
      }
  return y;
}

// Deterministic test data: values a * N(0,1) + b from a seeded engine.
template <class T>
std::vector<T> random_values(std::size_t n, std::uint32_t seed, double scale = 1.0,
                             double offset = 0.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<T> v(n);
  for (auto& e : v) e = static_cast<T>(offset + scale * dist(gen));
  return v;
}

// |a - b| <= atol + rtol * |b|.
inline bool close(double a, double b, double rtol, double atol) {
  return std::abs(a - b) <= atol + rtol * std::abs(b);
}

}  // namespace bnorm::testing
