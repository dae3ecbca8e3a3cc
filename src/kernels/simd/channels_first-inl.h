// Per-target loops of the channels-first SIMD kernels (inner > 1: NCHW, NCDHW, (N,C,L)),
// included once per target by channels_first.cpp (Highway's skeleton: the loops here, the host
// side in the .cpp).
//
// Channel c of x[o][c][i] is `outer` runs of `inner` contiguous values, one run per o, so every
// loop here walks runs and vectorizes along inner; tails use partial loads/stores (simd-inl.h).
//   GroupMomentsT    leaves of kLeafValues logical values of one channel (chunking.hpp), each
//                    read twice while it sits in L1: pass 1 sums (the shift), pass 2 sums
//                    residuals and squares about it; leaves merged left to right in a group.
//   GroupSumsT       sum dy and sum dy * (x - mean) over a group's values, in double lanes.
//   NormalizeRowsT   y = ((x - mean_hi) - mean_lo) * a + b per run, then the epilogue.
//   BackwardRowsT    dx = k_dy * dy + k_xc * (x - mean) + k_0 per run.
//   ForwardChannelT, BackwardChannelT (fused): one channel's statistics, then its y (or dx) while
//                    the channel is still in L2, so x (and dy) come from memory once. Same leaves,
//                    same tree, same coefficients (coefficients.hpp) as the phases: bitwise the
//                    same output either way.
// Per-target include guard (Highway's idiom: toggles once per target).
#if defined(BNORM_KERNELS_SIMD_CHANNELS_FIRST_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BNORM_KERNELS_SIMD_CHANNELS_FIRST_INL_H_
#undef BNORM_KERNELS_SIMD_CHANNELS_FIRST_INL_H_
#else
#define BNORM_KERNELS_SIMD_CHANNELS_FIRST_INL_H_
#endif

#include <hwy/highway.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cache_line.hpp"
#include "kernels/chunking.hpp"
#include "kernels/coefficients.hpp"
#include "kernels/simd/simd-inl.h"
#include "kernels/simd/tasks.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {
// Internal linkage: the families define templates of the same names and signatures
// (NormalizeRowsT, BackwardRowsT) in their own translation units.
namespace {

// Calls f(offset, length) for each contiguous run of channel c's logical values [begin, end);
// offset is the index of the run's first value in the tensor.
template <class F>
HWY_INLINE void ForEachRun(const Geometry& g, std::int64_t c, std::int64_t begin, std::int64_t end,
                           F&& f) {
  std::int64_t o = begin / g.inner;
  std::int64_t i = begin % g.inner;
  while (begin < end) {
    const std::int64_t length = std::min(g.inner - i, end - begin);
    f((o * g.channels + c) * g.inner + i, static_cast<size_t>(length));
    begin += length;
    ++o;
    i = 0;
  }
}

// Walks channel c's logical values [begin, end) in memory, prefetching a given number of values
// at a time. Pass 2 of a leaf reads from L1 and leaves the memory bus idle; prefetching the next
// leaf meanwhile keeps it busy (docs/kernels.md: prefetch across leaves).
template <class T>
class LeafPrefetcher {
 public:
  LeafPrefetcher(const T* x, const Geometry& g, std::int64_t c, std::int64_t begin,
                 std::int64_t end)
      : x_(x), g_(g), c_(c), o_(begin / g.inner), i_(begin % g.inner), left_(end - begin) {}

  // Prefetches the next `values` values (fewer at the end of the range).
  void Advance(std::int64_t values) {
    constexpr auto kLine = static_cast<std::int64_t>(kValuesPerLine<T>);
    while (values > 0 && left_ > 0) {
      const std::int64_t take = std::min({values, left_, g_.inner - i_});
      const T* p = x_ + (o_ * g_.channels + c_) * g_.inner + i_;
      for (std::int64_t k = 0; k < take; k += kLine) hwy::Prefetch(p + k);
      values -= take;
      left_ -= take;
      i_ += take;
      if (i_ == g_.inner) {
        ++o_;
        i_ = 0;
      }
    }
  }

 private:
  const T* x_;
  const Geometry& g_;
  std::int64_t c_, o_, i_, left_;
};

// Values per prefetch step in pass 2: a multiple of every target's 2 * Lanes(DD), so splitting a
// run into steps leaves AddResidualRun's accumulation order (and so the result) unchanged.
inline constexpr size_t kPrefetchStepValues = 256;
// How far ahead of the loads the backward sums prefetch, in values of the channel.
inline constexpr std::int64_t kSumsAheadValues = 1024;

// Pass 1 of a leaf: the sum whose mean pass 2 measures its residuals from. Pass 2 adds the
// residuals' own sum to that mean (leaf_moments), so pass 1 only needs a good shift, and float
// leaves sum in float lanes (no widening). Their shift is then off by at most about
// kLeafValues * 2^-24 of |mean|, which moves M2 by that squared over the variance in units of
// double's rounding: nothing at float's precision (docs/numerics.md). A float sum that overflows
// (values near FLT_MAX) is redone in double. Float lanes do a quarter of the work of widened
// ones (docs/kernels.md has the gain).
template <class T>
double LeafShift(const T* x, const Geometry& g, std::int64_t c, std::int64_t begin,
                 std::int64_t end) {
  if constexpr (std::is_same_v<T, float>) {
    Sum4F sum;
    ForEachRun(g, c, begin, end, [&](std::int64_t at, size_t n) { AddRun(x + at, n, sum); });
    const double total = sum.total();
    if (std::isfinite(total)) return total;
  }
  Sum4 sum;
  ForEachRun(g, c, begin, end, [&](std::int64_t at, size_t n) { AddRun(x + at, n, sum); });
  return sum.total();
}

template <class T>
Partial LeafMoments(const T* x, const Geometry& g, std::int64_t c, std::int64_t begin,
                    std::int64_t end) {
  const double n = static_cast<double>(end - begin);
  const double mean = LeafShift(x, g, c, begin, end) / n;
  Sum4 residual;
  Sum4 square;
  const VD vmean = hn::Set(DD(), mean);
  const std::int64_t count = g.count_per_channel();
  LeafPrefetcher<T> next(x, g, c, end, std::min(count, end + kLeafValues));
  ForEachRun(g, c, begin, end, [&](std::int64_t at, size_t len) {
    for (size_t k = 0; k < len; k += kPrefetchStepValues) {
      const size_t step = std::min(kPrefetchStepValues, len - k);
      next.Advance(static_cast<std::int64_t>(step));
      AddResidualRun(x + at + k, step, vmean, residual, square);
    }
  });
  return leaf_moments(n, mean, residual.total(), square.total());
}

// Moments of leaves [first, last) of channel c, merged left to right.
template <class T>
Partial GroupMomentsT(const T* x, const Geometry& g, std::int64_t c, std::int64_t first,
                      std::int64_t last) {
  const std::int64_t count = g.count_per_channel();
  Partial acc;
  for (std::int64_t l = first; l < last; ++l) {
    const std::int64_t begin = l * kLeafValues;
    acc = merge_chunks(acc, LeafMoments(x, g, c, begin, std::min(count, begin + kLeafValues)));
  }
  return acc;
}

// sum dy and sum dy * (x - mean) over channel c's logical values [begin, end).
template <class T>
void GroupSumsT(const T* x, const T* dy, const Geometry& g, std::int64_t c, std::int64_t begin,
                std::int64_t end, T mean, double* sum_dy, double* sum_dy_xc) {
  Sum4 s;
  Sum4 s_xc;
  const VD vmean = hn::Set(DD(), static_cast<double>(mean));
  // A channel's runs are far apart: the hardware prefetchers stop at each run's end. Prefetching
  // kSumsAheadValues ahead along the channel (across runs) keeps both streams in flight.
  // The prefetch runs past `end` into the channel's next group, which the fused backward reads
  // next (the first values of a group are then not cold).
  const std::int64_t count = g.count_per_channel();
  const std::int64_t ahead = std::min(count, begin + kSumsAheadValues);
  const std::int64_t ahead_end = std::min(count, end + kSumsAheadValues);
  LeafPrefetcher<T> next_x(x, g, c, ahead, ahead_end);
  LeafPrefetcher<T> next_dy(dy, g, c, ahead, ahead_end);
  ForEachRun(g, c, begin, end, [&](std::int64_t at, size_t n) {
    for (size_t k = 0; k < n; k += kPrefetchStepValues) {
      const size_t step = std::min(kPrefetchStepValues, n - k);
      next_x.Advance(static_cast<std::int64_t>(step));
      next_dy.Advance(static_cast<std::int64_t>(step));
      AddBackwardRun(x + at + k, dy + at + k, step, vmean, s, s_xc);
    }
  });
  *sum_dy = s.total();
  *sum_dy_xc = s_xc.total();
}

// Rows (o, c) in rows.begin .. rows.end, row = o * C + c: y = BN(x), then the epilogue.
template <bool kStream, class T>
void NormalizeRowsStream(const T* x, T* y, const Geometry& g, RowRange rows,
                         const NormalizeCoefficients<T>& k, const Epilogue<T>& e) {
  const auto n = static_cast<size_t>(g.inner);
  for (std::int64_t row = rows.begin; row < rows.end; ++row) {
    const std::int64_t c = row % g.channels;
    const std::int64_t at = row * g.inner;
    switch (e.activation) {
      case Activation::kNone:
        NormalizeRun<false, false, kStream>(x + at, y + at, e.z, n, k.mean_hi[c], k.mean_lo[c],
                                            k.a[c], k.b[c]);
        break;
      case Activation::kRelu:
        NormalizeRun<true, false, kStream>(x + at, y + at, e.z, n, k.mean_hi[c], k.mean_lo[c],
                                           k.a[c], k.b[c]);
        break;
      case Activation::kAddRelu:
        NormalizeRun<true, true, kStream>(x + at, y + at, e.z + at, n, k.mean_hi[c], k.mean_lo[c],
                                          k.a[c], k.b[c]);
        break;
    }
  }
}

template <class T>
void NormalizeRowsT(const T* x, T* y, const Geometry& g, RowRange rows,
                    const NormalizeCoefficients<T>& k, const Epilogue<T>& e, bool stream) {
  WithStores(stream, [&](auto kStream) {
    NormalizeRowsStream<decltype(kStream)::value>(x, y, g, rows, k, e);
  });
}

// Rows as in NormalizeRowsT: dx from the working-form coefficients.
template <class T>
void BackwardRowsT(const T* x, const T* dy, T* dx, const Geometry& g, RowRange rows,
                   const BackwardCoefficients<T>& k, bool stream) {
  const auto n = static_cast<size_t>(g.inner);
  WithStores(stream, [&](auto kStream) {
    for (std::int64_t row = rows.begin; row < rows.end; ++row) {
      const std::int64_t c = row % g.channels;
      const std::int64_t at = row * g.inner;
      BackwardRun<decltype(kStream)::value>(x + at, dy + at, dx + at, n, k.mean_w[c], k.k_dy_w[c],
                                            k.k_xc_w[c], k.k_0_w[c]);
    }
  });
}

// Fused forward of channel c: moments (the same leaves and tree as the moments phase), the
// coefficients, then y for the channel while it is in cache.
template <class T>
void ForwardChannelT(const T* x, T* y, const Geometry& g, std::int64_t c, const FusedForward<T>& f,
                     bool stream) {
  double* mean = f.mean;
  double* variance = f.variance;
  const ChunkPlan plan = plan_chunks(g.count_per_channel(), kLeafValues);
  std::array<Partial, kMaxGroups> parts;
  for (std::int64_t group = 0; group < plan.groups; ++group) {
    const std::int64_t first = group * plan.leaves_per_group;
    parts[group] =
        GroupMomentsT(x, g, c, first, std::min(plan.leaves, first + plan.leaves_per_group));
  }
  tree_merge(parts.data(), plan.groups, 1);
  const Moments moments = to_moments(parts[0]);
  mean[c] = moments.mean;
  variance[c] = moments.count > 0 ? moments.m2 / moments.count : 0.0;
  const ForwardChannel<T> k =
      forward_channel<T>(mean[c], scale_of(value_or(f.gamma, c, 1.0), variance[c], f.epsilon),
                         value_or(f.beta, c, 0.0));
  const auto n = static_cast<size_t>(g.inner);
  if (!k.working_precision) {
    // Data at the edge of T's range: this channel in the double form, as the reference does.
    for (std::int64_t o = 0; o < g.outer; ++o) {
      const std::int64_t at = (o * g.channels + c) * g.inner;
      for (size_t i = 0; i < n; ++i) {
        y[at + i] = static_cast<T>((static_cast<double>(x[at + i]) - mean[c]) * k.scale + k.shift);
      }
    }
    return;
  }
  WithStores(stream, [&](auto kStream) {
    for (std::int64_t o = 0; o < g.outer; ++o) {
      const std::int64_t at = (o * g.channels + c) * g.inner;
      NormalizeRun<false, false, decltype(kStream)::value>(
          x + at, y + at, static_cast<const T*>(nullptr), n, k.mean_hi, k.mean_lo, k.a, k.b);
    }
  });
}

// Fused backward of channel c: the sums (the same groups and tree as backward_sums), the
// coefficients, then dx for the channel while x and dy are in cache.
template <class T>
void BackwardChannelT(const T* x, const T* dy, T* dx, const Geometry& g, std::int64_t c,
                      const FusedBackward<T>& f, bool stream) {
  const T* mean = f.mean;
  const T* variance = f.variance;
  const std::int64_t count = g.count_per_channel();
  const ChunkPlan plan = plan_chunks(count, kLeafValues);
  std::array<double, kMaxGroups> s;
  std::array<double, kMaxGroups> s_xc;
  const std::int64_t group_values = plan.leaves_per_group * plan.leaf;
  for (std::int64_t group = 0; group < plan.groups; ++group) {
    const std::int64_t begin = group * group_values;
    GroupSumsT(x, dy, g, c, begin, std::min(count, begin + group_values), mean[c], &s[group],
               &s_xc[group]);
  }
  tree_sum(s.data(), plan.groups, 1);
  tree_sum(s_xc.data(), plan.groups, 1);
  const double count_d = static_cast<double>(count);
  f.sum_dy[c] = s[0];
  f.sum_dy_xhat[c] = sum_dy_xhat_of(s_xc[0], static_cast<double>(variance[c]), f.epsilon);
  const BackwardChannel<T> k =
      backward_channel<T>(mean[c], variance[c], value_or(f.gamma, c, 1.0), f.epsilon, f.sum_dy[c],
                          f.sum_dy_xhat[c], count_d);
  const auto n = static_cast<size_t>(g.inner);
  if (!k.working_precision) {
    // Data at the edge of T's range: this channel in the double form, as the reference does.
    const double m = static_cast<double>(mean[c]);
    for (std::int64_t o = 0; o < g.outer; ++o) {
      const std::int64_t at = (o * g.channels + c) * g.inner;
      for (size_t i = 0; i < n; ++i) {
        dx[at + i] = static_cast<T>(k.k_dy * static_cast<double>(dy[at + i]) +
                                    k.k_xc * (static_cast<double>(x[at + i]) - m) + k.k_0);
      }
    }
    return;
  }
  WithStores(stream, [&](auto kStream) {
    for (std::int64_t o = 0; o < g.outer; ++o) {
      const std::int64_t at = (o * g.channels + c) * g.inner;
      BackwardRun<decltype(kStream)::value>(x + at, dy + at, dx + at, n, mean[c], k.k_dy_w,
                                            k.k_xc_w, k.k_0_w);
    }
  });
}

}  // namespace
}  // namespace bnorm::kernels::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
