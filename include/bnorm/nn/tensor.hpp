// Tensor: an owning, 64-byte aligned, row-major array of T with a shape.
//
// The training engine works on 2-D tensors (rows = examples, cols = features); the shape is kept
// general so that a later Conv2d can reuse the type.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <numeric>
#include <span>
#include <vector>

#include "bnorm/error.hpp"

namespace bnorm::nn {

// Aligned to a cache line so that SIMD loads of rows never split lines at the start.
template <class T>
struct AlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>& /*other*/) {}  // NOLINT: rebinding is implicit
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, std::size_t /*n*/) { ::operator delete(p, kAlignment); }
  template <class U>
  bool operator==(const AlignedAllocator<U>& /*other*/) const {
    return true;
  }
};

template <class T>
class Tensor {
 public:
  Tensor() = default;
  // A zero-filled tensor. Throws bnorm::Error for a negative dimension.
  explicit Tensor(std::vector<std::int64_t> shape) { resize(std::move(shape)); }
  Tensor(std::int64_t rows, std::int64_t cols) { resize({rows, cols}); }

  // Changes the shape; keeps the allocation when it is large enough. Contents are unspecified
  // after a resize that changes the element count (zero when newly allocated).
  void resize(std::vector<std::int64_t> shape) {
    std::int64_t n = 1;
    for (std::int64_t d : shape) {
      if (d < 0) throw Error("Tensor: negative dimension in shape; expected every dimension >= 0");
      n *= d;
    }
    shape_ = std::move(shape);
    data_.resize(static_cast<std::size_t>(n));
  }
  void resize(std::int64_t rows, std::int64_t cols) { resize({rows, cols}); }

  [[nodiscard]] const std::vector<std::int64_t>& shape() const { return shape_; }
  [[nodiscard]] std::int64_t rank() const { return static_cast<std::int64_t>(shape_.size()); }
  // Rows and cols of a 2-D tensor.
  [[nodiscard]] std::int64_t rows() const { return shape_.empty() ? 0 : shape_.front(); }
  [[nodiscard]] std::int64_t cols() const {
    return shape_.empty()
               ? 0
               : static_cast<std::int64_t>(data_.size()) / std::max<std::int64_t>(rows(), 1);
  }
  [[nodiscard]] std::int64_t size() const { return static_cast<std::int64_t>(data_.size()); }

  [[nodiscard]] T* data() { return data_.data(); }
  [[nodiscard]] const T* data() const { return data_.data(); }
  [[nodiscard]] std::span<T> span() { return data_; }
  [[nodiscard]] std::span<const T> span() const { return data_; }
  [[nodiscard]] T& operator()(std::int64_t r, std::int64_t c) {
    return data_[static_cast<std::size_t>(r * cols() + c)];
  }
  [[nodiscard]] T operator()(std::int64_t r, std::int64_t c) const {
    return data_[static_cast<std::size_t>(r * cols() + c)];
  }
  void fill(T value) { std::fill(data_.begin(), data_.end(), value); }

 private:
  std::vector<std::int64_t> shape_;
  std::vector<T, AlignedAllocator<T>> data_;
};

}  // namespace bnorm::nn
