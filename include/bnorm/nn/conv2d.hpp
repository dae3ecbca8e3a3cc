// Conv2d: 2-D convolution (cross-correlation, as every framework) of NHWC feature maps.
#pragma once

#include <cstdint>
#include <vector>

#include "bnorm/nn/dense.hpp"
#include "bnorm/nn/feature_map.hpp"
#include "bnorm/nn/layer.hpp"
#include "bnorm/nn/rng.hpp"

namespace bnorm::nn {

struct Conv2dOptions {
  std::int64_t out_channels = 16;
  std::int64_t kernel = 3;    // square kernel: kernel x kernel
  std::int64_t stride = 1;    // the same in both directions
  std::int64_t padding = -1;  // zeros on every side; -1: kernel / 2 ("same" for odd kernels)
  bool use_bias = true;
};

// y[n, oh, ow, co] = bias[co] + sum_{i, j, ci} x[n, oh*s + i - pad, ow*s + j - pad, ci] *
//                    kernel[i, j, ci, co]
// with x zero outside the image. The kernel is HWIO (kernel, kernel, in, out): the Keras and
// TensorFlow layout, and as a (kernel*kernel*in, out) matrix it is what im2col multiplies.
// Initialization: Init::kGaussian draws N(0, std^2); kGlorotUniform uses fan_in =
// kernel*kernel*in and fan_out = kernel*kernel*out (Keras). Biases start at zero.
//
// Computation (per example, examples in parallel over OpenMP threads): im2col into a
// per-thread buffer of out_positions x (kernel*kernel*in) values, then one Eigen GEMM. Backward
// keeps per-example partial weight and bias gradients and sums them in example order, so results
// are bitwise identical for any thread count.
template <class T>
class Conv2d final : public Layer<T> {
 public:
  // Throws bnorm::Error naming the field for a non-positive dimension, kernel or stride, a
  // negative padding other than -1, or an output of no positions.
  Conv2d(const FeatureMap& in, const Conv2dOptions& options, const Init& init, Rng& rng);

  [[nodiscard]] std::string kind() const override { return "conv2d"; }
  [[nodiscard]] std::int64_t out_features() const override { return out_.size(); }
  [[nodiscard]] const FeatureMap& in_shape() const { return in_; }
  [[nodiscard]] const FeatureMap& out_shape() const { return out_; }
  // x: N examples of in_shape().size() values (NHWC); y: (N, out H, out W, out C).
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void backward(const Tensor<T>& dy, Tensor<T>* dx) override;
  [[nodiscard]] std::vector<Parameter<T>> parameters() override;

  [[nodiscard]] Tensor<T>& kernel() { return kernel_; }
  [[nodiscard]] Tensor<T>& bias() { return bias_; }

 private:
  [[nodiscard]] std::int64_t patch() const { return k_ * k_ * in_.channels; }
  void im2col(const T* image, T* columns) const;
  void col2im(const T* columns, T* image) const;
  void prepare_buffers();
  T* buffer(std::size_t which);

  FeatureMap in_, out_;
  std::int64_t k_, stride_, pad_;
  bool use_bias_;
  Tensor<T> kernel_, bias_, dkernel_, dbias_;
  const Tensor<T>* x_ = nullptr;
  // Per-thread im2col buffers (two per thread: columns and their gradient) and the
  // per-example partial gradients of backward.
  std::vector<std::vector<T, AlignedAllocator<T>>> buffers_;
  std::vector<double> partial_dkernel_, partial_dbias_;
};

extern template class Conv2d<float>;
extern template class Conv2d<double>;

}  // namespace bnorm::nn
