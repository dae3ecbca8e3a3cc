// Dropout: inverted dropout whose mask is a pure function of (seed, stream, step, example,
// feature).
#pragma once

#include <cstdint>
#include <vector>

#include "bnorm/nn/layer.hpp"

namespace bnorm::nn {

// Training: y = x * keep / (1 - rate), keep = [u >= rate] with u in [0, 1) a hash of
// (seed, stream, step, global example index, feature) (splitmix64 finalizer, 53 bits).
// Inference and kBatchStatistics: y = x. The mask depends on nothing else (not the batch
// split, the rank, the thread count or earlier calls), so a resumed run and every
// data-parallel sharding draw the same mask for the same example at the same step.
// `stream` tells apart the dropout layers of one network (the builder passes the layer index).
template <class T>
class Dropout final : public Layer<T> {
 public:
  // Throws bnorm::Error naming the field for rate outside [0, 1) or features <= 0.
  Dropout(double rate, std::int64_t features, std::uint64_t seed, std::uint64_t stream);

  [[nodiscard]] std::string kind() const override { return "dropout"; }
  [[nodiscard]] std::int64_t out_features() const override { return features_; }
  void begin_step(std::int64_t step, std::int64_t first_example) override;
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void backward(const Tensor<T>& dy, Tensor<T>* dx) override;
  [[nodiscard]] double rate() const { return rate_; }

  // The mask value (0 or 1 / (1 - rate)) of one element: the function forward uses.
  [[nodiscard]] T multiplier(std::int64_t step, std::int64_t example, std::int64_t feature) const;

 private:
  double rate_;
  std::int64_t features_;
  std::uint64_t seed_, stream_;
  std::int64_t step_ = 0, first_example_ = 0;
  std::vector<T> mask_;  // multipliers of the last training forward
  std::int64_t rows_ = -1;
};

extern template class Dropout<float>;
extern template class Dropout<double>;

}  // namespace bnorm::nn
