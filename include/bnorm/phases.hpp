// The phases of batch normalization as public functions, for callers that communicate or
// otherwise work between them (synchronized BN with overlap, custom layers).
//
// forward_training  = channel_moments -> [merge across ranks] -> normalize
// backward          = backward_sums   -> [all-reduce]         -> backward_input
//
// The same conventions as functional.hpp apply (sizes checked, outputs assigned, y may alias x).
#pragma once

#include <cstdint>
#include <span>

#include "bnorm/geometry.hpp"

namespace bnorm {

// The sufficient statistics of a set of values: how many, their mean, and
// M2 = sum (x - mean)^2. Biased variance = m2 / count.
struct Moments {
  double count = 0;
  double mean = 0;
  double m2 = 0;
};

// Chan et al.'s parallel merge: the moments of the union of two disjoint sets.
//   n = na + nb, delta = mean_b - mean_a, mean = mean_a + delta * nb / n,
//   M2 = M2_a + M2_b + delta^2 * na * nb / n.
// Either side may be empty (count 0); the result does not depend on the thread count.
Moments merge(const Moments& a, const Moments& b);

// Forward phase 1: each channel's moments over this process's outer*inner values.
// Requires: moments.size() == g.channels. An empty batch gives {0, 0, 0}.
void channel_moments(std::span<const float> x, const Geometry& g, std::span<Moments> moments);
void channel_moments(std::span<const double> x, const Geometry& g, std::span<Moments> moments);

// Merges moments gathered from `ranks` processes, laid out [rank][channel], in rank order:
// the result is identical on every rank that calls it with the same input.
// Requires: per_rank.size() == ranks * merged.size().
void merge_ranks(std::span<const Moments> per_rank, int ranks, std::span<Moments> merged);

// Forward phase 2: y = gamma * (x - mean) / sqrt(variance + epsilon) + beta with statistics in
// double. Used by forward_training (batch statistics) and by layers with their own statistics.
void normalize(std::span<const float> x, std::span<float> y, const Geometry& g,
               std::span<const float> gamma, std::span<const float> beta,
               std::span<const double> mean, std::span<const double> variance, double epsilon);
void normalize(std::span<const double> x, std::span<double> y, const Geometry& g,
               std::span<const double> gamma, std::span<const double> beta,
               std::span<const double> mean, std::span<const double> variance, double epsilon);

// Backward phase 1: per channel sum_dy = sum dy and sum_dy_xhat = sum dy * x_hat, in double,
// with x_hat = (x - mean) / sqrt(variance + epsilon).
void backward_sums(std::span<const float> x, std::span<const float> dy, const Geometry& g,
                   std::span<const float> mean, std::span<const float> variance, double epsilon,
                   std::span<double> sum_dy, std::span<double> sum_dy_xhat);
void backward_sums(std::span<const double> x, std::span<const double> dy, const Geometry& g,
                   std::span<const double> mean, std::span<const double> variance, double epsilon,
                   std::span<double> sum_dy, std::span<double> sum_dy_xhat);

// Backward phase 2: dx = gamma / sqrt(var + eps) * (dy - sum_dy / count - x_hat * sum_dy_xhat /
// count), where count is the number of values the statistics came from (global when
// synchronized). count must be > 0 unless the local batch is empty.
void backward_input(std::span<const float> x, std::span<const float> dy, const Geometry& g,
                    std::span<const float> gamma, std::span<const float> mean,
                    std::span<const float> variance, double epsilon, std::span<const double> sum_dy,
                    std::span<const double> sum_dy_xhat, double count, std::span<float> dx);
void backward_input(std::span<const double> x, std::span<const double> dy, const Geometry& g,
                    std::span<const double> gamma, std::span<const double> mean,
                    std::span<const double> variance, double epsilon,
                    std::span<const double> sum_dy, std::span<const double> sum_dy_xhat,
                    double count, std::span<double> dx);

}  // namespace bnorm
