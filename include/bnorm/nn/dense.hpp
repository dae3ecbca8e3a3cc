// Dense: y = x * kernel + bias, the fully connected layer (matrix products through Eigen).
#pragma once

#include <cstdint>

#include "bnorm/nn/layer.hpp"
#include "bnorm/nn/rng.hpp"

namespace bnorm::nn {

// How Dense kernels are initialized. Biases start at zero.
struct Init {
  enum class Kind { kGaussian, kGlorotUniform };
  Kind kind = Kind::kGaussian;
  double std = 0.01;  // kGaussian: N(0, std^2), the paper's "small random Gaussian values"
};

// kernel has shape (in, out) (the Keras layout: y = x * kernel), bias (out).
template <class T>
class Dense final : public Layer<T> {
 public:
  // Requires in > 0, out > 0, init.std >= 0; throws bnorm::Error otherwise.
  Dense(std::int64_t in, std::int64_t out, bool use_bias, const Init& init, Rng& rng);

  [[nodiscard]] std::string kind() const override { return "dense"; }
  [[nodiscard]] std::int64_t out_features() const override { return out_; }
  [[nodiscard]] std::int64_t in_features() const { return in_; }
  // Throws bnorm::Error if x is not (N, in).
  void forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  // dkernel = x^T dy, dbias = column sums of dy, dx = dy kernel^T.
  void backward(const Tensor<T>& dy, Tensor<T>* dx) override;
  [[nodiscard]] std::vector<Parameter<T>> parameters() override;

  [[nodiscard]] Tensor<T>& kernel() { return kernel_; }
  [[nodiscard]] Tensor<T>& bias() { return bias_; }

 private:
  std::int64_t in_, out_;
  bool use_bias_;
  Tensor<T> kernel_, bias_, dkernel_, dbias_;
  const Tensor<T>* x_ = nullptr;
};

extern template class Dense<float>;
extern template class Dense<double>;

}  // namespace bnorm::nn
