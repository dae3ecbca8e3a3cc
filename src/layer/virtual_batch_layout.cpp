// Gather and scatter between tf.keras's strided virtual batches and contiguous ones: a copy of
// whole samples, so the statistics and normalization kernels stay the contiguous ones and both
// layouts give bitwise equal values for the same virtual batch.
#include "layer/virtual_batch_layout.hpp"

#include <algorithm>
#include <cstddef>

namespace bnorm::detail {
namespace {

// Strided sample a*G + j <-> contiguous position j*V + a (V = N / G samples per virtual batch).
template <class T>
void permute(std::span<const T> src, std::span<T> dst, std::int64_t samples, std::int64_t groups,
             bool to_contiguous) {
  if (samples <= 0 || src.empty()) return;
  const auto N = static_cast<std::size_t>(samples);
  const auto G = static_cast<std::size_t>(groups);
  const std::size_t V = N / G;
  const std::size_t S = src.size() / N;  // values per sample
  for (std::size_t j = 0; j < G; ++j) {
    for (std::size_t a = 0; a < V; ++a) {
      const std::size_t strided = (a * G + j) * S;
      const std::size_t contiguous = (j * V + a) * S;
      const std::size_t from = to_contiguous ? strided : contiguous;
      const std::size_t to = to_contiguous ? contiguous : strided;
      std::copy_n(src.begin() + static_cast<std::ptrdiff_t>(from), S,
                  dst.begin() + static_cast<std::ptrdiff_t>(to));
    }
  }
}

}  // namespace

template <class T>
void gather_strided_virtual_batches(std::span<const T> src, std::span<T> dst, std::int64_t samples,
                                    std::int64_t groups) {
  permute(src, dst, samples, groups, true);
}

template <class T>
void scatter_strided_virtual_batches(std::span<const T> src, std::span<T> dst, std::int64_t samples,
                                     std::int64_t groups) {
  permute(src, dst, samples, groups, false);
}

template void gather_strided_virtual_batches(std::span<const float>, std::span<float>, std::int64_t,
                                             std::int64_t);
template void gather_strided_virtual_batches(std::span<const double>, std::span<double>,
                                             std::int64_t, std::int64_t);
template void scatter_strided_virtual_batches(std::span<const float>, std::span<float>,
                                              std::int64_t, std::int64_t);
template void scatter_strided_virtual_batches(std::span<const double>, std::span<double>,
                                              std::int64_t, std::int64_t);

}  // namespace bnorm::detail
