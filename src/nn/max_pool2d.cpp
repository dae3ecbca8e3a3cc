// MaxPool2d (argmax kept; ties to the first; NaN propagates) and Flatten.
#include "bnorm/nn/max_pool2d.hpp"

#include <cmath>

#include <fmt/format.h>

#include "bnorm/error.hpp"

namespace bnorm::nn {

template <class T>
MaxPool2d<T>::MaxPool2d(const FeatureMap& in, std::int64_t size, std::int64_t stride)
    : in_(in), size_(size), stride_(stride == 0 ? size : stride) {
  if (size < 1) throw Error(fmt::format("MaxPool2d: size {}; expected >= 1", size));
  if (stride < 0) throw Error(fmt::format("MaxPool2d: stride {}; expected >= 0", stride));
  if (in.height < size || in.width < size || in.channels <= 0) {
    throw Error(
        fmt::format("MaxPool2d: a {}x{} window over a {}x{}x{} input; expected the "
                    "window to fit and channels > 0",
                    size, size, in.height, in.width, in.channels));
  }
  out_ = {(in.height - size) / stride_ + 1, (in.width - size) / stride_ + 1, in.channels};
}

template <class T>
void MaxPool2d<T>::forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  if (x.cols() != in_.size()) {
    throw Error(fmt::format("MaxPool2d: input has {} values per example; expected {} ({}x{}x{})",
                            x.cols(), in_.size(), in_.height, in_.width, in_.channels));
  }
  const std::int64_t n = x.rows();
  const std::int64_t c = in_.channels;
  y.resize({n, out_.height, out_.width, c});
  const bool training = mode == Mode::kTraining;
  argmax_.resize(training ? static_cast<std::size_t>(n * out_.size()) : 0);
#pragma omp parallel for schedule(static)
  for (std::int64_t e = 0; e < n; ++e) {
    const T* image = x.data() + e * in_.size();
    T* out = y.data() + e * out_.size();
    std::int32_t* arg = training ? argmax_.data() + e * out_.size() : nullptr;
    for (std::int64_t oh = 0; oh < out_.height; ++oh) {
      for (std::int64_t ow = 0; ow < out_.width; ++ow) {
        for (std::int64_t ch = 0; ch < c; ++ch) {
          std::int64_t best = (oh * stride_ * in_.width + ow * stride_) * c + ch;
          for (std::int64_t i = 0; i < size_ && !std::isnan(image[best]); ++i) {
            for (std::int64_t j = 0; j < size_; ++j) {
              const std::int64_t at = ((oh * stride_ + i) * in_.width + ow * stride_ + j) * c + ch;
              // Strictly greater: ties keep the first; a NaN is taken and ends the search.
              if (image[at] > image[best] || std::isnan(image[at])) {
                best = at;
                if (std::isnan(image[at])) break;
              }
            }
          }
          const std::int64_t o = (oh * out_.width + ow) * c + ch;
          out[o] = image[best];
          if (arg != nullptr) arg[o] = static_cast<std::int32_t>(best);
        }
      }
    }
  }
  rows_ = training ? n : -1;
}

template <class T>
void MaxPool2d<T>::backward(const Tensor<T>& dy, Tensor<T>* dx) {
  if (rows_ < 0) throw Error("MaxPool2d::backward: no training-mode forward before it");
  if (dy.rows() != rows_ || dy.cols() != out_.size()) {
    throw Error(fmt::format("MaxPool2d::backward: dy is ({}, {}); expected ({}, {})", dy.rows(),
                            dy.cols(), rows_, out_.size()));
  }
  if (dx == nullptr) return;
  dx->resize({rows_, in_.height, in_.width, in_.channels});
#pragma omp parallel for schedule(static)
  for (std::int64_t e = 0; e < rows_; ++e) {
    T* image = dx->data() + e * in_.size();
    std::fill(image, image + in_.size(), T{0});
    const T* grad = dy.data() + e * out_.size();
    const std::int32_t* arg = argmax_.data() + e * out_.size();
    for (std::int64_t o = 0; o < out_.size(); ++o) image[arg[o]] += grad[o];
  }
}

template <class T>
void Flatten<T>::forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  if (x.cols() != features_) {
    throw Error(
        fmt::format("Flatten: input has {} values per example; expected {}", x.cols(), features_));
  }
  y.resize(x.rows(), features_);
  std::copy(x.span().begin(), x.span().end(), y.span().begin());
  rows_ = mode == Mode::kTraining ? x.rows() : -1;
  in_shape_ = x.shape();
}

template <class T>
void Flatten<T>::backward(const Tensor<T>& dy, Tensor<T>* dx) {
  if (rows_ < 0) throw Error("Flatten::backward: no training-mode forward before it");
  if (dy.rows() != rows_ || dy.cols() != features_) {
    throw Error(fmt::format("Flatten::backward: dy is ({}, {}); expected ({}, {})", dy.rows(),
                            dy.cols(), rows_, features_));
  }
  if (dx == nullptr) return;
  dx->resize(in_shape_);
  std::copy(dy.span().begin(), dy.span().end(), dx->span().begin());
}

template class MaxPool2d<float>;
template class MaxPool2d<double>;
template class Flatten<float>;
template class Flatten<double>;

}  // namespace bnorm::nn
