// Conv2d: im2col per example + one GEMM (Eigen), examples in parallel.
//   forward   Y_n (P, Co)  = cols(x_n) (P, K) * kernel (K, Co) + bias
//   backward  dkernel      = sum_n cols(x_n)^T * dY_n      (per-example partials, summed in order)
//             dbias        = sum_n column sums of dY_n
//             dx_n         = col2im(dY_n * kernel^T)
// with P = out H * out W positions and K = kernel*kernel*in channels. docs/training.md has the
// measurements behind im2col + Eigen (vs oneDNN and OpenBLAS).
#include "bnorm/nn/conv2d.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "eigen_maps.hpp"

namespace bnorm::nn {
namespace {

template <class T>
using MatrixMap = Eigen::Map<detail::RowMatrix<T>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const detail::RowMatrix<T>>;

std::int64_t output_size(std::int64_t in, std::int64_t k, std::int64_t stride, std::int64_t pad) {
  const std::int64_t span = in + 2 * pad - k;
  return span < 0 ? 0 : span / stride + 1;
}

// out[w] = sum over r = 0, 1, ... of rows[r][w], accumulated in that order (in double).
template <class T>
void sum_rows(const std::vector<double>& rows, std::int64_t count, std::int64_t width, T* out) {
  std::vector<double> sum(static_cast<std::size_t>(width), 0.0);
  for (std::int64_t r = 0; r < count; ++r) {
    const double* row = rows.data() + r * width;
    for (std::int64_t w = 0; w < width; ++w) sum[static_cast<std::size_t>(w)] += row[w];
  }
  for (std::int64_t w = 0; w < width; ++w)
    out[w] = static_cast<T>(sum[static_cast<std::size_t>(w)]);
}

}  // namespace

template <class T>
Conv2d<T>::Conv2d(const FeatureMap& in, const Conv2dOptions& o, const Init& init, Rng& rng)
    : in_(in),
      k_(o.kernel),
      stride_(o.stride),
      pad_(o.padding < 0 ? o.kernel / 2 : o.padding),
      use_bias_(o.use_bias) {
  if (in.height <= 0 || in.width <= 0 || in.channels <= 0) {
    throw Error(fmt::format("Conv2d: input {}x{}x{}; expected every dimension > 0", in.height,
                            in.width, in.channels));
  }
  if (o.out_channels <= 0) {
    throw Error(fmt::format("Conv2dOptions::out_channels {}; expected > 0", o.out_channels));
  }
  if (o.kernel <= 0) throw Error(fmt::format("Conv2dOptions::kernel {}; expected > 0", o.kernel));
  if (o.stride <= 0) throw Error(fmt::format("Conv2dOptions::stride {}; expected > 0", o.stride));
  if (o.padding < -1) {
    throw Error(
        fmt::format("Conv2dOptions::padding {}; expected >= 0 or -1 (kernel / 2)", o.padding));
  }
  if (!(init.std >= 0)) throw Error(fmt::format("Conv2d: init std {}; expected >= 0", init.std));
  out_ = {output_size(in.height, k_, stride_, pad_), output_size(in.width, k_, stride_, pad_),
          o.out_channels};
  if (out_.height <= 0 || out_.width <= 0) {
    throw Error(
        fmt::format("Conv2d: a {}x{} kernel with padding {} over a {}x{} input leaves no "
                    "output; expected kernel <= input + 2 * padding",
                    k_, k_, pad_, in.height, in.width));
  }
  kernel_.resize({k_, k_, in.channels, out_.channels});
  dkernel_.resize({k_, k_, in.channels, out_.channels});
  bias_.resize(1, use_bias_ ? out_.channels : 0);
  dbias_.resize(1, use_bias_ ? out_.channels : 0);
  const double fan_in = static_cast<double>(patch());
  const double fan_out = static_cast<double>(k_ * k_ * out_.channels);
  const double limit = std::sqrt(6.0 / (fan_in + fan_out));
  for (T& w : kernel_.span()) {
    w = static_cast<T>(init.kind == Init::Kind::kGaussian ? init.std * rng.normal()
                                                          : limit * (2.0 * rng.uniform() - 1.0));
  }
}

// Row p = (oh, ow) of `columns` holds the window at that output position, (i, j, ci) with ci
// fastest: each (i, j) is one contiguous run of in.channels values of the NHWC image.
template <class T>
void Conv2d<T>::im2col(const T* image, T* columns) const {
  const std::int64_t c = in_.channels;
  const std::int64_t run = c * static_cast<std::int64_t>(sizeof(T));
  T* row = columns;
  for (std::int64_t oh = 0; oh < out_.height; ++oh) {
    for (std::int64_t ow = 0; ow < out_.width; ++ow) {
      for (std::int64_t i = 0; i < k_; ++i) {
        const std::int64_t h = oh * stride_ + i - pad_;
        for (std::int64_t j = 0; j < k_; ++j) {
          const std::int64_t w = ow * stride_ + j - pad_;
          T* dst = row + (i * k_ + j) * c;
          if (h < 0 || h >= in_.height || w < 0 || w >= in_.width) {
            std::fill(dst, dst + c, T{0});
          } else {
            std::memcpy(dst, image + (h * in_.width + w) * c, static_cast<std::size_t>(run));
          }
        }
      }
      row += patch();
    }
  }
}

// The adjoint of im2col: adds every window's values back to where they came from, in the
// fixed (oh, ow, i, j, ci) order. `image` must be zeroed by the caller.
template <class T>
void Conv2d<T>::col2im(const T* columns, T* image) const {
  const std::int64_t c = in_.channels;
  const T* row = columns;
  for (std::int64_t oh = 0; oh < out_.height; ++oh) {
    for (std::int64_t ow = 0; ow < out_.width; ++ow) {
      for (std::int64_t i = 0; i < k_; ++i) {
        const std::int64_t h = oh * stride_ + i - pad_;
        if (h < 0 || h >= in_.height) continue;
        for (std::int64_t j = 0; j < k_; ++j) {
          const std::int64_t w = ow * stride_ + j - pad_;
          if (w < 0 || w >= in_.width) continue;
          const T* src = row + (i * k_ + j) * c;
          T* dst = image + (h * in_.width + w) * c;
          for (std::int64_t ci = 0; ci < c; ++ci) dst[ci] += src[ci];
        }
      }
      row += patch();
    }
  }
}

template <class T>
void Conv2d<T>::prepare_buffers() {
  // Columns (positions x patch), and either their gradient (same size) or one example's weight
  // gradient (patch x out channels).
  const auto rows = static_cast<std::size_t>(std::max(out_.positions(), out_.channels));
  buffers_.resize(static_cast<std::size_t>(omp_get_max_threads()) * 2);
  for (auto& b : buffers_) b.resize(rows * static_cast<std::size_t>(patch()));
}

template <class T>
T* Conv2d<T>::buffer(std::size_t which) {
  return buffers_[static_cast<std::size_t>(omp_get_thread_num()) * 2 + which].data();
}

template <class T>
void Conv2d<T>::forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  if (x.cols() != in_.size()) {
    throw Error(fmt::format("Conv2d: input has {} values per example; expected {} ({}x{}x{})",
                            x.cols(), in_.size(), in_.height, in_.width, in_.channels));
  }
  const std::int64_t n = x.rows();
  const std::int64_t positions = out_.positions();
  y.resize({n, out_.height, out_.width, out_.channels});
  prepare_buffers();
  const ConstMatrixMap<T> kernel(kernel_.data(), patch(), out_.channels);
#pragma omp parallel for schedule(static)
  for (std::int64_t e = 0; e < n; ++e) {
    T* columns = buffer(0);
    im2col(x.data() + e * in_.size(), columns);
    MatrixMap<T> out(y.data() + e * out_.size(), positions, out_.channels);
    out.noalias() = ConstMatrixMap<T>(columns, positions, patch()) * kernel;
    if (use_bias_) out.rowwise() += detail::as_matrix(bias_).row(0);
  }
  x_ = mode == Mode::kTraining ? &x : nullptr;
}

template <class T>
void Conv2d<T>::backward(const Tensor<T>& dy, Tensor<T>* dx) {
  if (x_ == nullptr) throw Error("Conv2d::backward: no training-mode forward before it");
  const std::int64_t n = x_->rows();
  if (dy.rows() != n || dy.cols() != out_.size()) {
    throw Error(fmt::format("Conv2d::backward: dy is ({}, {}); expected ({}, {})", dy.rows(),
                            dy.cols(), n, out_.size()));
  }
  const std::int64_t positions = out_.positions();
  const std::int64_t weights = patch() * out_.channels;
  partial_dkernel_.resize(static_cast<std::size_t>(n * weights));
  partial_dbias_.resize(static_cast<std::size_t>(n * out_.channels));
  if (dx != nullptr) dx->resize(x_->shape());
  prepare_buffers();
  const ConstMatrixMap<T> kernel(kernel_.data(), patch(), out_.channels);
#pragma omp parallel for schedule(static)
  for (std::int64_t e = 0; e < n; ++e) {
    const ConstMatrixMap<T> grad(dy.data() + e * out_.size(), positions, out_.channels);
    T* columns = buffer(0);
    im2col(x_->data() + e * in_.size(), columns);
    // The per-example weight gradient in T (one GEMM), widened to double for the sum over
    // examples, which runs in a fixed order below.
    T* dw = buffer(1);
    MatrixMap<T>(dw, patch(), out_.channels).noalias() =
        ConstMatrixMap<T>(columns, positions, patch()).transpose() * grad;
    std::copy(dw, dw + weights, partial_dkernel_.begin() + e * weights);
    double* db = partial_dbias_.data() + e * out_.channels;
    std::fill(db, db + out_.channels, 0.0);
    for (std::int64_t p = 0; p < positions; ++p) {
      for (std::int64_t c = 0; c < out_.channels; ++c) db[c] += grad(p, c);
    }
    if (dx != nullptr) {
      T* dcolumns = buffer(1);
      MatrixMap<T>(dcolumns, positions, patch()).noalias() = grad * kernel.transpose();
      T* image = dx->data() + e * in_.size();
      std::fill(image, image + in_.size(), T{0});
      col2im(dcolumns, image);
    }
  }
  // Sums over examples in example order (e outer keeps the partials' reads sequential).
  sum_rows(partial_dkernel_, n, weights, dkernel_.data());
  if (use_bias_) sum_rows(partial_dbias_, n, out_.channels, dbias_.data());
}

template <class T>
std::vector<Parameter<T>> Conv2d<T>::parameters() {
  std::vector<Parameter<T>> p{
      {"kernel", {k_, k_, in_.channels, out_.channels}, kernel_.span(), dkernel_.span()}};
  if (use_bias_) p.push_back({"bias", {out_.channels}, bias_.span(), dbias_.span()});
  return p;
}

template class Conv2d<float>;
template class Conv2d<double>;

}  // namespace bnorm::nn
