// The arguments of the SIMD families' per-target entry points (HWY_EXPORT'ed in channels_*.cpp):
// plain structs that the host side fills and the per-target loops (*-inl.h) read, so that an
// export takes its coefficients and outputs as one argument each, not a dozen loose pointers.
#pragma once

#include <cstdint>

namespace bnorm::kernels::simd {

// Rows [begin, end) of one task: rows (o, c) numbered o * C + c in the channels-first family,
// rows o in the channels-last family.
struct RowRange {
  std::int64_t begin, end;
};

// A fused channels-first forward: gamma and beta (null: scale 1, shift 0) and epsilon in, every
// channel's double batch mean and biased variance out.
template <class T>
struct FusedForward {
  const T* gamma;
  const T* beta;
  double epsilon;
  double* mean;
  double* variance;
};

// A fused channels-first backward: gamma (may be null), the statistics and epsilon in, every
// channel's sum dy and sum dy * x_hat out.
template <class T>
struct FusedBackward {
  const T* gamma;
  const T* mean;
  const T* variance;
  double epsilon;
  double* sum_dy;
  double* sum_dy_xhat;
};

}  // namespace bnorm::kernels::simd
