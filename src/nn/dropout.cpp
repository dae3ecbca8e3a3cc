// Dropout: a counter-based mask (a hash of the element's coordinates), so no generator state.
#include "bnorm/nn/dropout.hpp"

#include <fmt/format.h>

#include "bnorm/error.hpp"

namespace bnorm::nn {
namespace {

// splitmix64's finalizer: a bijection of 64-bit words with full avalanche.
std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// One coordinate after another, each added to the mixed state by the golden-ratio increment:
// distinct tuples give independent-looking words.
std::uint64_t hash(std::uint64_t seed, std::uint64_t stream, std::uint64_t step,
                   std::uint64_t example, std::uint64_t feature) {
  constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
  std::uint64_t h = mix(seed + kGolden);
  h = mix(h + stream + kGolden);
  h = mix(h + step + kGolden);
  h = mix(h + example + kGolden);
  return mix(h + feature + kGolden);
}

}  // namespace

template <class T>
Dropout<T>::Dropout(double rate, std::int64_t features, std::uint64_t seed, std::uint64_t stream)
    : rate_(rate), features_(features), seed_(seed), stream_(stream) {
  if (!(rate >= 0 && rate < 1)) {
    throw Error(fmt::format("Dropout: rate {}; expected a value in [0, 1)", rate));
  }
  if (features <= 0) throw Error(fmt::format("Dropout: features {}; expected > 0", features));
}

template <class T>
void Dropout<T>::begin_step(std::int64_t step, std::int64_t first_example) {
  step_ = step;
  first_example_ = first_example;
}

template <class T>
T Dropout<T>::multiplier(std::int64_t step, std::int64_t example, std::int64_t feature) const {
  const std::uint64_t h =
      hash(seed_, stream_, static_cast<std::uint64_t>(step), static_cast<std::uint64_t>(example),
           static_cast<std::uint64_t>(feature));
  const double u = static_cast<double>(h >> 11) * 0x1.0p-53;
  return u >= rate_ ? static_cast<T>(1.0 / (1.0 - rate_)) : T{0};
}

template <class T>
void Dropout<T>::forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  if (x.cols() != features_) {
    throw Error(
        fmt::format("Dropout: input has {} values per example; expected {}", x.cols(), features_));
  }
  y.resize(x.shape());
  const std::int64_t n = x.rows();
  if (mode != Mode::kTraining) {
    std::copy(x.span().begin(), x.span().end(), y.span().begin());
    rows_ = -1;
    return;
  }
  mask_.resize(static_cast<std::size_t>(n * features_));
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t f = 0; f < features_; ++f) {
      const std::int64_t i = r * features_ + f;
      mask_[static_cast<std::size_t>(i)] = multiplier(step_, first_example_ + r, f);
      y.data()[i] = x.data()[i] * mask_[static_cast<std::size_t>(i)];
    }
  }
  rows_ = n;
}

template <class T>
void Dropout<T>::backward(const Tensor<T>& dy, Tensor<T>* dx) {
  if (rows_ < 0) throw Error("Dropout::backward: no training-mode forward before it");
  if (dy.rows() != rows_ || dy.cols() != features_) {
    throw Error(fmt::format("Dropout::backward: dy is ({}, {}); expected ({}, {})", dy.rows(),
                            dy.cols(), rows_, features_));
  }
  if (dx == nullptr) return;
  dx->resize(dy.shape());
  for (std::int64_t i = 0; i < dy.size(); ++i) {
    dx->data()[i] = dy.data()[i] * mask_[static_cast<std::size_t>(i)];
  }
}

template class Dropout<float>;
template class Dropout<double>;

}  // namespace bnorm::nn
