// The statistics phase of training, written once for every caller (the functional API, the fused
// BN + ReLU variants, the BatchNorm layer):
//
//   moments (the selected kernel) -> [all-gather + merge in rank order] -> single-value rule
//   -> mean and biased variance in double -> cast to the caller's T
//
// and the one check of the single-value rule ("Expected more than 1 value per channel").
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "bnorm/comm.hpp"
#include "bnorm/geometry.hpp"

namespace bnorm::detail {

// Who asks, as named in an error: the function ("forward_training", "BatchNorm"), the user's
// input shape when the caller has one (else the geometry is named), and a note on the rule in
// force (the layer's single_value policy).
struct Caller {
  std::string_view fn;
  std::span<const std::int64_t> shape = {};
  std::string_view note = {};
};

// Training needs more than one value per channel (PyTorch's rule): throws bnorm::Error when
// count == 1. `global`: count is over every rank, and the message names no local shape (every
// rank throws the same message after the same collective).
void require_more_than_one_value(const Caller& caller, double count, const Geometry& g,
                                 bool global);

// What a channel of one value gives: an error (PyTorch), or mean = x, variance 0 (Keras).
enum class SingleValue { kReject, kAccept };

// The batch statistics of x (geometry g, validated by the caller): mean and biased variance in
// double (mean, variance: g.channels values each) and cast to T (batch_mean, batch_variance).
// Synchronized over comm when it has more than one rank (null: this process alone). Returns the
// count per channel (global when synchronized). Scratch: ScratchSlot::kMoments.
template <class T>
double batch_statistics(const Caller& caller, std::span<const T> x, const Geometry& g,
                        const Communicator* comm, SingleValue single_value, std::span<double> mean,
                        std::span<double> variance, std::span<T> batch_mean,
                        std::span<T> batch_variance);

// batch_mean[c] = T(mean[c]), batch_variance[c] = T(variance[c]): the statistics a training call
// reports (also from a fused kernel's double statistics).
template <class T>
void store_statistics(std::span<const double> mean, std::span<const double> variance,
                      std::span<T> batch_mean, std::span<T> batch_variance);

}  // namespace bnorm::detail
