// The functional API: stateless batch normalization on raw buffers.
//
// Conventions shared by every function here:
// - `x`, `y`, `dy`, `dx` hold geometry.size() values laid out as x[outer][channels][inner].
// - Per-channel spans (`gamma`, `beta`, `mean`, `variance`, `batch_*`, `dgamma`, `dbeta`) hold
//   geometry.channels values. An empty `gamma` means scale 1, an empty `beta` shift 0.
// - Every output is assigned, never accumulated into: its previous contents do not matter.
// - `y` may alias `x` (in place); `dx` may alias `dy`. Other overlaps are not allowed.
// - Statistics are computed in double from fixed-size chunks merged in a fixed order, so the
//   results are bitwise identical for any number of OpenMP threads.
// - A channel whose variance + epsilon is 0 (constant channel with epsilon 0) is normalized to
//   x_hat = 0: y = beta and dx = 0, never NaN.
// - Throws bnorm::Error (naming the argument, its value and what was expected) for a span of
//   the wrong size, channels == 0, a negative or NaN epsilon, or, in training, exactly one value
//   per channel. An empty batch (outer*inner == 0) is not an error: statistics are 0 and
//   gradients of gamma and beta are 0.
#pragma once

#include <span>

#include "bnorm/comm.hpp"
#include "bnorm/geometry.hpp"

namespace bnorm {

// Training forward: batch statistics over outer*inner values of each channel, then
//   y = gamma * (x - mean) / sqrt(var + epsilon) + beta.
// Ensures: batch_mean and batch_variance hold the mean and the biased variance that were used.
void forward_training(std::span<const float> x, std::span<float> y, const Geometry& g,
                      std::span<const float> gamma, std::span<const float> beta, float epsilon,
                      std::span<float> batch_mean, std::span<float> batch_variance);
void forward_training(std::span<const double> x, std::span<double> y, const Geometry& g,
                      std::span<const double> gamma, std::span<const double> beta, double epsilon,
                      std::span<double> batch_mean, std::span<double> batch_variance);

// Synchronized training forward: the statistics are those of the concatenation of every rank's
// batch (each rank's (count, mean, M2) gathered and merged in rank order). One collective.
// The "more than one value per channel" check uses the global count.
void forward_training(std::span<const float> x, std::span<float> y, const Geometry& g,
                      std::span<const float> gamma, std::span<const float> beta, float epsilon,
                      std::span<float> batch_mean, std::span<float> batch_variance,
                      const Communicator& comm);
void forward_training(std::span<const double> x, std::span<double> y, const Geometry& g,
                      std::span<const double> gamma, std::span<const double> beta, double epsilon,
                      std::span<double> batch_mean, std::span<double> batch_variance,
                      const Communicator& comm);

// Inference forward with given statistics: y = gamma * (x - mean) / sqrt(variance + epsilon) +
// beta. Requires additionally: every variance + epsilon >= 0 is not checked; a negative sum gives
// NaN in that channel only.
void forward_inference(std::span<const float> x, std::span<float> y, const Geometry& g,
                       std::span<const float> gamma, std::span<const float> beta,
                       std::span<const float> mean, std::span<const float> variance, float epsilon);
void forward_inference(std::span<const double> x, std::span<double> y, const Geometry& g,
                       std::span<const double> gamma, std::span<const double> beta,
                       std::span<const double> mean, std::span<const double> variance,
                       double epsilon);

// Backward of forward_training, given the statistics it returned:
//   dbeta  = sum dy,   dgamma = sum dy * x_hat,
//   dx     = gamma / sqrt(var + eps) * (dy - dbeta / M - x_hat * dgamma / M).
// dgamma and dbeta may be empty when not wanted.
void backward(std::span<const float> x, std::span<const float> dy, const Geometry& g,
              std::span<const float> gamma, std::span<const float> batch_mean,
              std::span<const float> batch_variance, float epsilon, std::span<float> dx,
              std::span<float> dgamma, std::span<float> dbeta);
void backward(std::span<const double> x, std::span<const double> dy, const Geometry& g,
              std::span<const double> gamma, std::span<const double> batch_mean,
              std::span<const double> batch_variance, double epsilon, std::span<double> dx,
              std::span<double> dgamma, std::span<double> dbeta);

// Synchronized backward: sum dy and sum dy * x_hat are all-reduced (one collective) and M is the
// global count. dgamma and dbeta are the global sums, identical on every rank.
void backward(std::span<const float> x, std::span<const float> dy, const Geometry& g,
              std::span<const float> gamma, std::span<const float> batch_mean,
              std::span<const float> batch_variance, float epsilon, std::span<float> dx,
              std::span<float> dgamma, std::span<float> dbeta, const Communicator& comm);
void backward(std::span<const double> x, std::span<const double> dy, const Geometry& g,
              std::span<const double> gamma, std::span<const double> batch_mean,
              std::span<const double> batch_variance, double epsilon, std::span<double> dx,
              std::span<double> dgamma, std::span<double> dbeta, const Communicator& comm);

}  // namespace bnorm
