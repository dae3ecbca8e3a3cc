// MaxPool2d: the maximum over each window of an NHWC feature map, channel by channel.
#pragma once

#include <cstdint>
#include <vector>

#include "bnorm/nn/feature_map.hpp"
#include "bnorm/nn/layer.hpp"

namespace bnorm::nn {

// Windows of size x size at steps of `stride`, no padding; the output is
// ((H - size) / stride + 1, (W - size) / stride + 1) rounded down (PyTorch, ceil_mode=False).
// The position of each maximum (argmax) is kept for backward: ties go to the first position in
// row-major window order, and a NaN anywhere in a window is the window's result (the first NaN:
// NaN propagates, as PyTorch's max_pool2d). Backward routes each dy to its argmax, summing in a
// fixed order where windows overlap.
template <class T>
class MaxPool2d final : public Layer<T> {
 public:
  // stride 0: stride = size. Throws bnorm::Error for size < 1, stride < 0, or a window larger
  // than the input.
  MaxPool2d(const FeatureMap& in, std::int64_t size = 2, std::int64_t stride = 0);

  [[nodiscard]] std::string kind() const override { return "max_pool2d"; }
  [[nodiscard]] std::int64_t out_features() const override { return out_.size(); }
  [[nodiscard]] const FeatureMap& out_shape() const { return out_; }
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void backward(const Tensor<T>& dy, Tensor<T>* dx) override;
  // Per output value of the last training forward: the index of its maximum within the
  // example's input (h * W + w) * C + c.
  [[nodiscard]] const std::vector<std::int32_t>& argmax() const { return argmax_; }

 private:
  FeatureMap in_, out_;
  std::int64_t size_, stride_;
  std::int64_t rows_ = -1;  // examples of the last training forward; -1: none
  std::vector<std::int32_t> argmax_;
};

// Flatten: (N, H, W, C) -> (N, H*W*C), the values unchanged (NHWC order).
template <class T>
class Flatten final : public Layer<T> {
 public:
  explicit Flatten(std::int64_t features) : features_(features) {}
  [[nodiscard]] std::string kind() const override { return "flatten"; }
  [[nodiscard]] std::int64_t out_features() const override { return features_; }
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void backward(const Tensor<T>& dy, Tensor<T>* dx) override;

 private:
  std::int64_t features_;
  std::int64_t rows_ = -1;
  std::vector<std::int64_t> in_shape_;
};

extern template class MaxPool2d<float>;
extern template class MaxPool2d<double>;
extern template class Flatten<float>;
extern template class Flatten<double>;

}  // namespace bnorm::nn
