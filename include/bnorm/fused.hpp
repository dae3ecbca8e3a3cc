// Fused batch normalization + activation, as the peers offer them (oneDNN's fuse_norm_relu and
// fuse_norm_add_relu, PyTorch's batch_norm + relu fusion in inference graphs): the activation is
// applied in the same pass that writes y, and its backward in the pass that reads dy.
//
//   BN + ReLU:        y = max(0, BN(x))
//   BN + Add + ReLU:  y = max(0, BN(x) + z)      (ResNet's residual join)
// with BN(x) = gamma * (x - mean) / sqrt(var + epsilon) + beta, as in functional.hpp.
//
// Backward: the ReLU passes dy where y > 0 and 0 elsewhere (the subgradient 0 at y == 0, as
// PyTorch and oneDNN), either from the mask saved by the forward pass or recomputed from y;
// then the batch-norm backward of that masked gradient. For BN + Add + ReLU the masked gradient
// is also the gradient of z (dz).
//
// Conventions of functional.hpp apply: spans are size-checked (bnorm::Error naming the argument),
// empty gamma/beta mean 1/0, outputs are assigned, statistics are deterministic for any thread
// count, one value per channel in training is an error. Aliasing allowed: y with x (and, for
// Add, with z); dx with dy; dz with dy. dx must not alias dz.
#pragma once

#include <cstdint>
#include <span>

#include "bnorm/geometry.hpp"

namespace bnorm {

// ---- BN + ReLU ----

// Training forward: batch statistics, then y = max(0, BN(x)). `mask` may be empty (not wanted);
// otherwise it receives mask[j] = 1 if y[j] > 0 else 0, for backward_relu.
void forward_training_relu(std::span<const float> x, std::span<float> y, const Geometry& g,
                           std::span<const float> gamma, std::span<const float> beta, float epsilon,
                           std::span<float> batch_mean, std::span<float> batch_variance,
                           std::span<std::uint8_t> mask);
void forward_training_relu(std::span<const double> x, std::span<double> y, const Geometry& g,
                           std::span<const double> gamma, std::span<const double> beta,
                           double epsilon, std::span<double> batch_mean,
                           std::span<double> batch_variance, std::span<std::uint8_t> mask);

// Inference forward with given statistics: y = max(0, BN(x)).
void forward_inference_relu(std::span<const float> x, std::span<float> y, const Geometry& g,
                            std::span<const float> gamma, std::span<const float> beta,
                            std::span<const float> mean, std::span<const float> variance,
                            float epsilon);
void forward_inference_relu(std::span<const double> x, std::span<double> y, const Geometry& g,
                            std::span<const double> gamma, std::span<const double> beta,
                            std::span<const double> mean, std::span<const double> variance,
                            double epsilon);

// Backward with the forward's mask: dx = BN-backward(dy * mask); dgamma/dbeta may be empty.
void backward_relu(std::span<const float> x, std::span<const float> dy,
                   std::span<const std::uint8_t> mask, const Geometry& g,
                   std::span<const float> gamma, std::span<const float> batch_mean,
                   std::span<const float> batch_variance, float epsilon, std::span<float> dx,
                   std::span<float> dgamma, std::span<float> dbeta);
void backward_relu(std::span<const double> x, std::span<const double> dy,
                   std::span<const std::uint8_t> mask, const Geometry& g,
                   std::span<const double> gamma, std::span<const double> batch_mean,
                   std::span<const double> batch_variance, double epsilon, std::span<double> dx,
                   std::span<double> dgamma, std::span<double> dbeta);

// Backward from the forward's output y (y > 0 is the mask): no mask to store.
void backward_relu_from_y(std::span<const float> x, std::span<const float> y,
                          std::span<const float> dy, const Geometry& g,
                          std::span<const float> gamma, std::span<const float> batch_mean,
                          std::span<const float> batch_variance, float epsilon, std::span<float> dx,
                          std::span<float> dgamma, std::span<float> dbeta);
void backward_relu_from_y(std::span<const double> x, std::span<const double> y,
                          std::span<const double> dy, const Geometry& g,
                          std::span<const double> gamma, std::span<const double> batch_mean,
                          std::span<const double> batch_variance, double epsilon,
                          std::span<double> dx, std::span<double> dgamma, std::span<double> dbeta);

// ---- BN + Add + ReLU ----

// Training forward: batch statistics of x, then y = max(0, BN(x) + z); z has x's shape.
void forward_training_add_relu(std::span<const float> x, std::span<const float> z,
                               std::span<float> y, const Geometry& g, std::span<const float> gamma,
                               std::span<const float> beta, float epsilon,
                               std::span<float> batch_mean, std::span<float> batch_variance);
void forward_training_add_relu(std::span<const double> x, std::span<const double> z,
                               std::span<double> y, const Geometry& g,
                               std::span<const double> gamma, std::span<const double> beta,
                               double epsilon, std::span<double> batch_mean,
                               std::span<double> batch_variance);

// Backward from y: dz = dy where y > 0, else 0; dx = BN-backward(dz). dz may alias dy.
void backward_add_relu(std::span<const float> x, std::span<const float> y,
                       std::span<const float> dy, const Geometry& g, std::span<const float> gamma,
                       std::span<const float> batch_mean, std::span<const float> batch_variance,
                       float epsilon, std::span<float> dx, std::span<float> dz,
                       std::span<float> dgamma, std::span<float> dbeta);
void backward_add_relu(std::span<const double> x, std::span<const double> y,
                       std::span<const double> dy, const Geometry& g, std::span<const double> gamma,
                       std::span<const double> batch_mean, std::span<const double> batch_variance,
                       double epsilon, std::span<double> dx, std::span<double> dz,
                       std::span<double> dgamma, std::span<double> dbeta);

}  // namespace bnorm
