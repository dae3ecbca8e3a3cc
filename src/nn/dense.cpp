// Dense layer: the three matrix products of a fully connected layer, through Eigen.
//   forward   y       = x * kernel + 1 bias^T      (N,in)(in,out)
//   backward  dkernel = x^T * dy                   (in,N)(N,out)
//             dbias   = dy^T * 1                   column sums
//             dx      = dy * kernel^T              (N,out)(out,in)
#include <cmath>

#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/nn/dense.hpp"
#include "eigen_maps.hpp"

namespace bnorm::nn {

using detail::as_matrix;

template <class T>
Dense<T>::Dense(std::int64_t in, std::int64_t out, bool use_bias, const Init& init, Rng& rng)
    : in_(in), out_(out), use_bias_(use_bias) {
  if (in <= 0 || out <= 0) {
    throw Error(fmt::format("Dense: in={}, out={}; expected both > 0", in, out));
  }
  if (!(init.std >= 0)) {
    throw Error(fmt::format("Dense: init std {}; expected >= 0", init.std));
  }
  kernel_.resize(in, out);
  dkernel_.resize(in, out);
  bias_.resize(1, use_bias ? out : 0);
  dbias_.resize(1, use_bias ? out : 0);
  // Glorot (Xavier) uniform: U(-l, l) with l = sqrt(6 / (in + out)), Keras's default.
  const double limit = std::sqrt(6.0 / static_cast<double>(in + out));
  for (T& w : kernel_.span()) {
    w = static_cast<T>(init.kind == Init::Kind::kGaussian ? init.std * rng.normal()
                                                          : limit * (2.0 * rng.uniform() - 1.0));
  }
}

template <class T>
void Dense<T>::forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  if (x.rank() != 2 || x.cols() != in_) {
    throw Error(
        fmt::format("Dense: input has {} columns; expected {} (in_features)", x.cols(), in_));
  }
  y.resize(x.rows(), out_);
  auto Y = as_matrix(y);
  Y.noalias() = as_matrix(x) * as_matrix(kernel_);
  if (use_bias_) Y.rowwise() += as_matrix(bias_).row(0);
  x_ = mode == Mode::kTraining ? &x : nullptr;
}

template <class T>
void Dense<T>::backward(const Tensor<T>& dy, Tensor<T>* dx) {
  if (x_ == nullptr) throw Error("Dense::backward: no training-mode forward before it");
  if (dy.rows() != x_->rows() || dy.cols() != out_) {
    throw Error(fmt::format("Dense::backward: dy is ({}, {}); expected ({}, {})", dy.rows(),
                            dy.cols(), x_->rows(), out_));
  }
  const auto DY = as_matrix(dy);
  as_matrix(dkernel_).noalias() = as_matrix(*x_).transpose() * DY;
  if (use_bias_) as_matrix(dbias_).row(0).noalias() = DY.colwise().sum();
  if (dx != nullptr) {
    dx->resize(dy.rows(), in_);
    as_matrix(*dx).noalias() = DY * as_matrix(kernel_).transpose();
  }
}

template <class T>
std::vector<Parameter<T>> Dense<T>::parameters() {
  std::vector<Parameter<T>> p{{"kernel", {in_, out_}, kernel_.span(), dkernel_.span()}};
  if (use_bias_) p.push_back({"bias", {out_}, bias_.span(), dbias_.span()});
  return p;
}

template class Dense<float>;
template class Dense<double>;

}  // namespace bnorm::nn
