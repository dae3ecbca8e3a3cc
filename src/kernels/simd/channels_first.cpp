// SIMD kernels for channels-first tensors (inner > 1: NCHW, NCDHW, (N,C,L)).
//
// Channel c of x[o][c][i] is `outer` runs of `inner` contiguous values, one run per o, so every
// loop here walks runs and vectorizes along inner; tails use partial loads/stores (simd-inl.h).
//
//   moments         leaves of kLeafValues logical values of one channel (chunking.hpp), each
//                   read twice while it sits in L1: pass 1 sums (mean), pass 2 sums residuals
//                   and squares about that mean; leaves merged left to right inside a group,
//                   groups in a fixed tree. Tasks are (channel, group) pairs.
//   normalize       y = ((x - mean_hi) - mean_lo) * a + b per run, tasks are blocks of runs.
//   backward_sums   sum dy and sum dy * (x - mean) per (channel, group), in double lanes.
//   backward_input  dx = k_dy * dy + k_xc * (x - mean) + k_0 per run.
//   forward_training / backward (fused): one task per channel computes the channel's statistics
//                   and then applies them while the channel is still in L2, so x (and dy) come
//                   from memory once instead of twice. Same leaves, same tree, same coefficient
//                   rounding as the unfused phases: the output is bitwise the same either way.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/simd/channels_first.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Highway must come after foreach_target.h.
#include <hwy/highway.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "kernels/chunking.hpp"
#include "kernels/coefficients.hpp"
#include "kernels/simd/simd-inl.h"
#include "kernels/simd/simd.hpp"
#include "scratch.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {
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
// leaf meanwhile keeps it busy (measured: moments of NCHW 32x64x56x56 float at 1 thread, 1,650
// -> 940 us).
template <class T>
class LeafPrefetcher {
 public:
  LeafPrefetcher(const T* x, const Geometry& g, std::int64_t c, std::int64_t begin,
                 std::int64_t end)
      : x_(x), g_(g), c_(c), o_(begin / g.inner), i_(begin % g.inner), left_(end - begin) {}

  // Prefetches the next `values` values (fewer at the end of the range).
  void Advance(std::int64_t values) {
    constexpr std::int64_t kLine = 64 / static_cast<std::int64_t>(sizeof(T));
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
// (values near FLT_MAX) is redone in double. Measured at 1 thread, float NCHW forward (us):
// 32x128x28x28 911 -> 838, 32x256x14x14 544 -> 519; 2 threads 32x1024x14x14 1,622 -> 1,455.
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

// Rows (o, c) in [row0, row1), row = o * C + c; mode 0: plain, 1: relu, 2: add z then relu.
template <bool kStream, class T>
void NormalizeRowsStream(const T* x, T* y, const T* z, const Geometry& g, std::int64_t row0,
                         std::int64_t row1, const T* mean_hi, const T* mean_lo, const T* a,
                         const T* b, int mode) {
  const auto n = static_cast<size_t>(g.inner);
  for (std::int64_t row = row0; row < row1; ++row) {
    const std::int64_t c = row % g.channels;
    const std::int64_t at = row * g.inner;
    if (mode == 0) {
      NormalizeRun<false, false, kStream>(x + at, y + at, z, n, mean_hi[c], mean_lo[c], a[c], b[c]);
    } else if (mode == 1) {
      NormalizeRun<true, false, kStream>(x + at, y + at, z, n, mean_hi[c], mean_lo[c], a[c], b[c]);
    } else {
      NormalizeRun<true, true, kStream>(x + at, y + at, z + at, n, mean_hi[c], mean_lo[c], a[c],
                                        b[c]);
    }
  }
}

template <class T>
void NormalizeRowsT(const T* x, T* y, const T* z, const Geometry& g, std::int64_t row0,
                    std::int64_t row1, const T* mean_hi, const T* mean_lo, const T* a, const T* b,
                    int mode, bool stream) {
  WithStores(stream, [&](auto kStream) {
    NormalizeRowsStream<decltype(kStream)::value>(x, y, z, g, row0, row1, mean_hi, mean_lo, a, b,
                                                  mode);
  });
}

template <bool kStream, class T>
void BackwardRowsStream(const T* x, const T* dy, T* dx, const Geometry& g, std::int64_t row0,
                        std::int64_t row1, const T* mean, const T* k_dy, const T* k_xc,
                        const T* k_0) {
  const auto n = static_cast<size_t>(g.inner);
  for (std::int64_t row = row0; row < row1; ++row) {
    const std::int64_t c = row % g.channels;
    const std::int64_t at = row * g.inner;
    BackwardRun<kStream>(x + at, dy + at, dx + at, n, mean[c], k_dy[c], k_xc[c], k_0[c]);
  }
}

template <class T>
void BackwardRowsT(const T* x, const T* dy, T* dx, const Geometry& g, std::int64_t row0,
                   std::int64_t row1, const T* mean, const T* k_dy, const T* k_xc, const T* k_0,
                   bool stream) {
  WithStores(stream, [&](auto kStream) {
    BackwardRowsStream<decltype(kStream)::value>(x, dy, dx, g, row0, row1, mean, k_dy, k_xc, k_0);
  });
}

// Fused forward of channel c: moments (the same leaves and tree as the moments phase), the
// coefficients, then y for the channel while it is in cache.
template <class T>
void ForwardChannelT(const T* x, T* y, const Geometry& g, std::int64_t c, const T* gamma,
                     const T* beta, double epsilon, double* mean, double* variance, bool stream) {
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
  const ForwardChannel<T> k = forward_channel<T>(
      mean[c], scale_of(value_or(gamma, c, 1.0), variance[c], epsilon), value_or(beta, c, 0.0));
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
                      const T* gamma, const T* mean, const T* variance, double epsilon,
                      double* sum_dy, double* sum_dy_xhat, bool stream) {
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
  sum_dy[c] = s[0];
  sum_dy_xhat[c] = sum_dy_xhat_of(s_xc[0], static_cast<double>(variance[c]), epsilon);
  const BackwardChannel<T> k = backward_channel<T>(mean[c], variance[c], value_or(gamma, c, 1.0),
                                                   epsilon, sum_dy[c], sum_dy_xhat[c], count_d);
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

// Short runs (channels_first.cpp's host code decides: float NCHW with a small H*W such as 7x7).
// A channel's values then lie in runs of a few hundred bytes, one per o, C * inner values apart:
// walking one channel at a time reads a few lines per DRAM page. These loops walk a block of
// channels through each row o in memory order instead, one pass, with per-channel sums.

// Moments of channels [c0, c0 + width) over leaves [first, last) of `leaf` rows (values of o)
// each: sums of d = x - shift and d * d per run, the shift being the channel's first value in
// the leaf (TileMomentsWide's one pass, the same bound); leaves merge left to right into out.
template <class T>
void ShortRunMomentsT(const T* x, const Geometry& g, std::int64_t c0, std::int64_t width,
                      std::int64_t first, std::int64_t last, std::int64_t leaf,
                      const PartialRows& out, double* count) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  const auto inner = static_cast<size_t>(g.inner);
  const auto w = static_cast<size_t>(width);
  const auto accumulators = scratch<double>(ScratchSlot::kAccumulators, 3 * w);
  double* HWY_RESTRICT shift = accumulators.data();
  double* HWY_RESTRICT sum = shift + w;
  double* HWY_RESTRICT square = sum + w;
  *count = 0;
  for (std::int64_t l = first; l < last; ++l) {
    const std::int64_t r0 = l * leaf;
    const std::int64_t r1 = std::min(g.outer, r0 + leaf);
    for (size_t k = 0; k < w; ++k) {
      shift[k] =
          static_cast<double>(x[(r0 * g.channels + c0 + static_cast<std::int64_t>(k)) * g.inner]);
    }
    std::fill_n(sum, w, 0.0);
    std::fill_n(square, w, 0.0);
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* run = x + (r * g.channels + c0) * g.inner;
      for (size_t k = 0; k < w; ++k, run += inner) {
        const VD s = hn::Set(dd, shift[k]);
        VD t0 = hn::Zero(dd), t1 = t0, q0 = t0, q1 = t0;
        size_t i = 0;
        for (; i + 2 * N <= inner; i += 2 * N) {
          const VD d0 = hn::Sub(LoadWide(run + i), s);
          const VD d1 = hn::Sub(LoadWide(run + i + N), s);
          t0 = hn::Add(t0, d0);
          t1 = hn::Add(t1, d1);
          q0 = hn::MulAdd(d0, d0, q0);
          q1 = hn::MulAdd(d1, d1, q1);
        }
        for (; i < inner; i += N) {
          const size_t n = std::min(N, inner - i);
          // Lanes past the run load 0: d = -shift there, masked to 0.
          const VD d = hn::IfThenElseZero(
              hn::FirstN(dd, n), hn::Sub(n == N ? LoadWide(run + i) : LoadWideTail(run + i, n), s));
          t0 = hn::Add(t0, d);
          q0 = hn::MulAdd(d, d, q0);
        }
        sum[k] += ReduceSum(hn::Add(t0, t1));
        square[k] += ReduceSum(hn::Add(q0, q1));
      }
    }
    const double n = static_cast<double>((r1 - r0) * g.inner);
    if (l == first) {
      for (size_t k = 0; k < w; ++k) {
        const Partial p = leaf_moments(n, shift[k], sum[k], square[k]);
        out.mean[k] = p.mean;
        out.mean_lo[k] = p.mean_lo;
        out.m2[k] = p.m2;
      }
      *count = n;
      continue;
    }
    const MergeWeights weights = merge_weights(*count, n);
    for (size_t k = 0; k < w; ++k) {
      const Partial p = merge_weighted(Partial{0, out.mean[k], out.mean_lo[k], out.m2[k]},
                                       leaf_moments(n, shift[k], sum[k], square[k]), weights);
      out.mean[k] = p.mean;
      out.mean_lo[k] = p.mean_lo;
      out.m2[k] = p.m2;
    }
    *count = weights.count;
  }
}

// sum dy and sum dy * (x - mean) of channels [c0, c0 + width) over rows [r0, r1), short runs.
template <class T>
void ShortRunSumsT(const T* x, const T* dy, const Geometry& g, std::int64_t c0, std::int64_t width,
                   std::int64_t r0, std::int64_t r1, const T* mean, double* s_out,
                   double* s_xc_out) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  const auto inner = static_cast<size_t>(g.inner);
  const auto w = static_cast<size_t>(width);
  std::fill_n(s_out, w, 0.0);
  std::fill_n(s_xc_out, w, 0.0);
  for (std::int64_t r = r0; r < r1; ++r) {
    const std::int64_t at = (r * g.channels + c0) * g.inner;
    const T* xr = x + at;
    const T* dr = dy + at;
    for (size_t k = 0; k < w; ++k, xr += inner, dr += inner) {
      const VD m = hn::Set(dd, static_cast<double>(mean[c0 + static_cast<std::int64_t>(k)]));
      VD a0 = hn::Zero(dd), a1 = a0, b0 = a0, b1 = a0;
      size_t i = 0;
      for (; i + 2 * N <= inner; i += 2 * N) {
        const VD d0 = LoadWide(dr + i);
        const VD d1 = LoadWide(dr + i + N);
        a0 = hn::Add(a0, d0);
        a1 = hn::Add(a1, d1);
        b0 = hn::MulAdd(d0, hn::Sub(LoadWide(xr + i), m), b0);
        b1 = hn::MulAdd(d1, hn::Sub(LoadWide(xr + i + N), m), b1);
      }
      for (; i < inner; i += N) {
        const size_t n = std::min(N, inner - i);
        // Zero dy lanes past the run make the products zero whatever (0 - mean) is.
        const VD d = n == N ? LoadWide(dr + i) : LoadWideTail(dr + i, n);
        const VD v = n == N ? LoadWide(xr + i) : LoadWideTail(xr + i, n);
        a0 = hn::Add(a0, d);
        b0 = hn::MulAdd(d, hn::Sub(v, m), b0);
      }
      s_out[k] += ReduceSum(hn::Add(a0, a1));
      s_xc_out[k] += ReduceSum(hn::Add(b0, b1));
    }
  }
}

}  // namespace

void CfMergeRows(const PartialRows& a, const PartialRows& b, std::int64_t width,
                 const MergeWeights& weights) {
  MergeRows(a, b.mean, b.mean_lo, b.m2, static_cast<size_t>(width), weights);
}

// Short runs are a float path only (short_runs below).
void CfShortRunMoments(const float* x, const Geometry& g, std::int64_t c0, std::int64_t width,
                       std::int64_t first, std::int64_t last, std::int64_t leaf,
                       const PartialRows& out, double* count) {
  ShortRunMomentsT(x, g, c0, width, first, last, leaf, out, count);
}
void CfShortRunSums(const float* x, const float* dy, const Geometry& g, std::int64_t c0,
                    std::int64_t width, std::int64_t r0, std::int64_t r1, const float* mean,
                    double* s, double* s_xc) {
  ShortRunSumsT(x, dy, g, c0, width, r0, r1, mean, s, s_xc);
}

// Non-template entry points, one per element type, for HWY_EXPORT.
#define BNORM_CF_ENTRY_POINTS(T, S)                                                             \
  Partial CfGroupMoments##S(const T* x, const Geometry& g, std::int64_t c, std::int64_t first,  \
                            std::int64_t last) {                                                \
    return GroupMomentsT(x, g, c, first, last);                                                 \
  }                                                                                             \
  void CfGroupSums##S(const T* x, const T* dy, const Geometry& g, std::int64_t c,               \
                      std::int64_t begin, std::int64_t end, T mean, double* s, double* s_xc) {  \
    GroupSumsT(x, dy, g, c, begin, end, mean, s, s_xc);                                         \
  }                                                                                             \
  void CfNormalizeRows##S(const T* x, T* y, const T* z, const Geometry& g, std::int64_t row0,   \
                          std::int64_t row1, const T* mean_hi, const T* mean_lo, const T* a,    \
                          const T* b, int mode, bool stream) {                                  \
    NormalizeRowsT(x, y, z, g, row0, row1, mean_hi, mean_lo, a, b, mode, stream);               \
  }                                                                                             \
  void CfBackwardRows##S(const T* x, const T* dy, T* dx, const Geometry& g, std::int64_t row0,  \
                         std::int64_t row1, const T* mean, const T* k_dy, const T* k_xc,        \
                         const T* k_0, bool stream) {                                           \
    BackwardRowsT(x, dy, dx, g, row0, row1, mean, k_dy, k_xc, k_0, stream);                     \
  }                                                                                             \
  void CfForwardChannel##S(const T* x, T* y, const Geometry& g, std::int64_t c, const T* gamma, \
                           const T* beta, double epsilon, double* mean, double* variance,       \
                           bool stream) {                                                       \
    ForwardChannelT(x, y, g, c, gamma, beta, epsilon, mean, variance, stream);                  \
  }                                                                                             \
  void CfBackwardChannel##S(const T* x, const T* dy, T* dx, const Geometry& g, std::int64_t c,  \
                            const T* gamma, const T* mean, const T* variance, double epsilon,   \
                            double* sum_dy, double* sum_dy_xhat, bool stream) {                 \
    BackwardChannelT(x, dy, dx, g, c, gamma, mean, variance, epsilon, sum_dy, sum_dy_xhat,      \
                     stream);                                                                   \
  }
BNORM_CF_ENTRY_POINTS(float, F)
BNORM_CF_ENTRY_POINTS(double, D)
#undef BNORM_CF_ENTRY_POINTS

}  // namespace bnorm::kernels::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <type_traits>

#include "kernels/simd/parallel.hpp"
#include "scratch.hpp"

namespace bnorm::kernels::simd {

HWY_EXPORT(CfGroupMomentsF);
HWY_EXPORT(CfGroupMomentsD);
HWY_EXPORT(CfGroupSumsF);
HWY_EXPORT(CfGroupSumsD);
HWY_EXPORT(CfShortRunMoments);
HWY_EXPORT(CfShortRunSums);
HWY_EXPORT(CfMergeRows);
HWY_EXPORT(CfNormalizeRowsF);
HWY_EXPORT(CfNormalizeRowsD);
HWY_EXPORT(CfBackwardRowsF);
HWY_EXPORT(CfBackwardRowsD);
HWY_EXPORT(CfForwardChannelF);
HWY_EXPORT(CfForwardChannelD);
HWY_EXPORT(CfBackwardChannelF);
HWY_EXPORT(CfBackwardChannelD);

namespace {

// The fused paths keep one channel of every tensor they read (x; x and dy in the backward) in
// L2 between the statistics and the elementwise pass: 1 MiB of L2 per core on the AVX-512
// parts we target (Zen 4, Skylake-SP and later). Bigger channels run the two phases instead.
constexpr std::int64_t kFuseBytes = std::int64_t{1} << 20;
// With fewer channels than this per thread, fused (one task per channel) balances poorly.
constexpr std::int64_t kFuseChannelsPerThread = 4;

// Short runs: float channels whose runs (H*W values) are under kShortRunBytes, such as 7x7 and
// 10x10. A channel's runs are then a few lines each, C * H * W values apart, and one channel at a
// time reads a few lines per DRAM page. Their statistics and sums walk blocks of channels through
// each row in memory order (ShortRunMomentsT, ShortRunSumsT), and the elementwise passes run
// unfused. Measured at 1 thread, float, one harness alternating old and new builds (us):
// 32x2048x7x7 forward 2,997 -> 1,655, backward 4,187 -> 2,562; 8x1024x7x7 forward 204 -> 106.
// From 14x14 on, the fused per-channel passes (x from memory once) measured as fast or faster.
// Double keeps the two-pass leaves: the one pass's worst-case bound grows with the leaf's count.
constexpr std::int64_t kShortRunBytes = 512;
// Values of a row per short-run task (a block of channels), and values of a channel per leaf.
constexpr std::int64_t kShortRunBlockValues = 4096;

template <class T>
bool short_runs(const Geometry& g) {
  return std::is_same_v<T, float> &&
         g.inner * static_cast<std::int64_t>(sizeof(T)) < kShortRunBytes;
}

struct ShortRunPlan {
  std::int64_t block = 1;  // channels per task
  ChunkPlan rows;          // leaves of rows (values of o), about kLeafValues values per channel
};

inline ShortRunPlan plan_short_runs(const Geometry& g) {
  ShortRunPlan p;
  p.block = std::max<std::int64_t>(1, kShortRunBlockValues / g.inner);
  p.rows = plan_chunks(g.outer, std::max<std::int64_t>(1, kLeafValues / g.inner));
  return p;
}

void short_run_moments(const float* x, const Geometry& g, Moments* moments) {
  const ShortRunPlan plan = plan_short_runs(g);
  const std::int64_t groups = plan.rows.groups;
  const std::int64_t C = g.channels;
  const std::int64_t blocks = (C + plan.block - 1) / plan.block;
  const auto partials = scratch<double>(ScratchSlot::kPartials, 3 * groups * C);
  const PartialRows rows{partials.data(), partials.data() + groups * C,
                         partials.data() + 2 * groups * C};
  // Every block of a group covers the same rows: counts[group] (block 0's task) is the group's.
  const auto counts = scratch<double>(ScratchSlot::kPartials2, blocks * groups);
  for_tasks(blocks * groups, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t group = t % groups;
    const std::int64_t c0 = (t / groups) * plan.block;
    const std::int64_t width = std::min(plan.block, C - c0);
    const std::int64_t first = group * plan.rows.leaves_per_group;
    const std::int64_t last = std::min(plan.rows.leaves, first + plan.rows.leaves_per_group);
    HWY_DYNAMIC_DISPATCH(CfShortRunMoments)
    (x, g, c0, width, first, last, plan.rows.leaf, rows.at(group * C + c0), &counts[t]);
  });
  const auto merge_rows = [](const PartialRows& a, const PartialRows& b, std::int64_t width,
                             const MergeWeights& weights) {
    HWY_DYNAMIC_DISPATCH(CfMergeRows)(a, b, width, weights);
  };
  merge_partial_rows(rows, counts.data(), groups, C, merge_rows, moments);
}

void short_run_sums(const float* x, const float* dy, const Geometry& g, const float* mean,
                    double* sum_dy, double* sum_dy_xc) {
  const ShortRunPlan plan = plan_short_runs(g);
  const std::int64_t groups = plan.rows.groups;
  const std::int64_t C = g.channels;
  const std::int64_t blocks = (C + plan.block - 1) / plan.block;
  const std::int64_t group_rows = plan.rows.leaves_per_group * plan.rows.leaf;
  const auto s = scratch<double>(ScratchSlot::kPartials, groups * C);
  const auto s_xc = scratch<double>(ScratchSlot::kPartials2, groups * C);
  for_tasks(blocks * groups, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t group = t % groups;
    const std::int64_t c0 = (t / groups) * plan.block;
    const std::int64_t width = std::min(plan.block, C - c0);
    const std::int64_t r0 = group * group_rows;
    const std::int64_t r1 = std::min(g.outer, r0 + group_rows);
    HWY_DYNAMIC_DISPATCH(CfShortRunSums)
    (x, dy, g, c0, width, r0, r1, mean, &s[group * C + c0], &s_xc[group * C + c0]);
  });
  tree_sum_rows(s.data(), groups, C);
  tree_sum_rows(s_xc.data(), groups, C);
  std::copy_n(s.data(), C, sum_dy);
  std::copy_n(s_xc.data(), C, sum_dy_xc);
}

template <class T>
bool fusable(const Geometry& g, std::int64_t tensors) {
  if (short_runs<T>(g)) return false;
  const std::int64_t bytes = g.count_per_channel() * static_cast<std::int64_t>(sizeof(T)) * tensors;
  if (bytes > kFuseBytes) return false;
  return !worth_threads(g.size()) || g.channels >= kFuseChannelsPerThread * omp_get_max_threads();
}

// Non-temporal stores write whole lines best. A run shorter than kStreamRunBytes shares most of
// its lines with the runs beside it, written partly by streaming and partly by regular (head and
// tail) stores; such outputs take regular stores. Measured at 1 thread, float 32x2048x7x7
// inference: 1,555 us streamed, 800 us not; 32x1024x14x14 (784-byte runs): 1,456 us streamed,
// 1,660 us not.
constexpr std::int64_t kStreamRunBytes = 256;

template <class T>
bool stream_runs(const Geometry& g) {
  return stream_output<T>(g) && g.inner * static_cast<std::int64_t>(sizeof(T)) >= kStreamRunBytes;
}

template <class T>
void normalize_rows(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k,
                    const Epilogue<T>& e) {
  const std::int64_t rows = g.outer * g.channels;
  const std::int64_t per_task = rows_per_task(g.inner);
  const std::int64_t tasks = (rows + per_task - 1) / per_task;
  const int mode = static_cast<int>(e.activation);
  const bool stream = stream_runs<T>(g);
  for_tasks(tasks, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t row0 = t * per_task;
    const std::int64_t row1 = std::min(rows, row0 + per_task);
    if constexpr (std::is_same_v<T, float>) {
      HWY_DYNAMIC_DISPATCH(CfNormalizeRowsF)
      (x, y, e.z, g, row0, row1, k.mean_hi, k.mean_lo, k.a, k.b, mode, stream);
    } else {
      HWY_DYNAMIC_DISPATCH(CfNormalizeRowsD)
      (x, y, e.z, g, row0, row1, k.mean_hi, k.mean_lo, k.a, k.b, mode, stream);
    }
  });
}

}  // namespace

bool channels_first_applies(const Geometry& g) {
  return g.inner > 1;
}

template <class T>
void channels_first_moments(const T* x, const Geometry& g, Moments* moments) {
  const ChunkPlan plan = plan_chunks(g.count_per_channel(), kLeafValues);
  if (plan.groups == 0) {
    std::fill(moments, moments + g.channels, Moments{});
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (short_runs<T>(g)) {
      short_run_moments(x, g, moments);
      return;
    }
  }
  const auto partials = scratch<Partial>(ScratchSlot::kPartials, g.channels * plan.groups);
  for_tasks(g.channels * plan.groups, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t c = t / plan.groups;
    const std::int64_t first = (t % plan.groups) * plan.leaves_per_group;
    const std::int64_t last = std::min(plan.leaves, first + plan.leaves_per_group);
    if constexpr (std::is_same_v<T, float>) {
      partials[t] = HWY_DYNAMIC_DISPATCH(CfGroupMomentsF)(x, g, c, first, last);
    } else {
      partials[t] = HWY_DYNAMIC_DISPATCH(CfGroupMomentsD)(x, g, c, first, last);
    }
  });
  for (std::int64_t c = 0; c < g.channels; ++c) {
    tree_merge(&partials[c * plan.groups], plan.groups, 1);
    moments[c] = to_moments(partials[c * plan.groups]);
  }
}

template <class T>
void channels_first_normalize(const T* x, T* y, const Geometry& g,
                              const NormalizeCoefficients<T>& k, const Epilogue<T>& e) {
  normalize_rows(x, y, g, k, e);
}

template <class T>
void channels_first_backward_sums(const T* x, const T* dy, const Geometry& g, const T* mean,
                                  double* sum_dy, double* sum_dy_xc) {
  const std::int64_t count = g.count_per_channel();
  const ChunkPlan plan = plan_chunks(count, kLeafValues);
  if (plan.groups == 0) {
    std::fill(sum_dy, sum_dy + g.channels, 0.0);
    std::fill(sum_dy_xc, sum_dy_xc + g.channels, 0.0);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (short_runs<T>(g)) {
      short_run_sums(x, dy, g, mean, sum_dy, sum_dy_xc);
      return;
    }
  }
  const std::int64_t tasks = g.channels * plan.groups;
  const auto s = scratch<double>(ScratchSlot::kPartials, tasks);
  const auto s_xc = scratch<double>(ScratchSlot::kPartials2, tasks);
  const std::int64_t group_values = plan.leaves_per_group * plan.leaf;
  for_tasks(tasks, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t c = t / plan.groups;
    const std::int64_t begin = (t % plan.groups) * group_values;
    const std::int64_t end = std::min(count, begin + group_values);
    if constexpr (std::is_same_v<T, float>) {
      HWY_DYNAMIC_DISPATCH(CfGroupSumsF)(x, dy, g, c, begin, end, mean[c], &s[t], &s_xc[t]);
    } else {
      HWY_DYNAMIC_DISPATCH(CfGroupSumsD)(x, dy, g, c, begin, end, mean[c], &s[t], &s_xc[t]);
    }
  });
  for (std::int64_t c = 0; c < g.channels; ++c) {
    tree_sum(&s[c * plan.groups], plan.groups, 1);
    tree_sum(&s_xc[c * plan.groups], plan.groups, 1);
    sum_dy[c] = s[c * plan.groups];
    sum_dy_xc[c] = s_xc[c * plan.groups];
  }
}

template <class T>
void channels_first_backward_input(const T* x, const T* dy, T* dx, const Geometry& g,
                                   const BackwardCoefficients<T>& k) {
  const std::int64_t rows = g.outer * g.channels;
  const std::int64_t per_task = rows_per_task(g.inner);
  const std::int64_t tasks = (rows + per_task - 1) / per_task;
  const bool stream = stream_runs<T>(g);
  for_tasks(tasks, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t row0 = t * per_task;
    const std::int64_t row1 = std::min(rows, row0 + per_task);
    if constexpr (std::is_same_v<T, float>) {
      HWY_DYNAMIC_DISPATCH(CfBackwardRowsF)
      (x, dy, dx, g, row0, row1, k.mean_w, k.k_dy_w, k.k_xc_w, k.k_0_w, stream);
    } else {
      HWY_DYNAMIC_DISPATCH(CfBackwardRowsD)
      (x, dy, dx, g, row0, row1, k.mean_w, k.k_dy_w, k.k_xc_w, k.k_0_w, stream);
    }
  });
}

template <class T>
bool channels_first_forward_training(const T* x, T* y, const Geometry& g, const T* gamma,
                                     const T* beta, double epsilon, double* mean,
                                     double* variance) {
  if (!fusable<T>(g, 1) || g.size() == 0) return false;
  const bool stream = stream_output<T>(g);
  for_tasks(g.channels, worth_threads(g.size()), [&](std::int64_t c) {
    if constexpr (std::is_same_v<T, float>) {
      HWY_DYNAMIC_DISPATCH(CfForwardChannelF)
      (x, y, g, c, gamma, beta, epsilon, mean, variance, stream);
    } else {
      HWY_DYNAMIC_DISPATCH(CfForwardChannelD)
      (x, y, g, c, gamma, beta, epsilon, mean, variance, stream);
    }
  });
  return true;
}

template <class T>
bool channels_first_backward(const T* x, const T* dy, T* dx, const Geometry& g, const T* gamma,
                             const T* mean, const T* variance, double epsilon, double* sum_dy,
                             double* sum_dy_xhat) {
  if (!fusable<T>(g, 2) || g.size() == 0) return false;
  const bool stream = stream_output<T>(g);
  for_tasks(g.channels, worth_threads(g.size()), [&](std::int64_t c) {
    if constexpr (std::is_same_v<T, float>) {
      HWY_DYNAMIC_DISPATCH(CfBackwardChannelF)
      (x, dy, dx, g, c, gamma, mean, variance, epsilon, sum_dy, sum_dy_xhat, stream);
    } else {
      HWY_DYNAMIC_DISPATCH(CfBackwardChannelD)
      (x, dy, dx, g, c, gamma, mean, variance, epsilon, sum_dy, sum_dy_xhat, stream);
    }
  });
  return true;
}

#define BNORM_INSTANTIATE(T)                                                                      \
  template void channels_first_moments<T>(const T*, const Geometry&, Moments*);                   \
  template void channels_first_normalize<T>(const T*, T*, const Geometry&,                        \
                                            const NormalizeCoefficients<T>&, const Epilogue<T>&); \
  template void channels_first_backward_sums<T>(const T*, const T*, const Geometry&, const T*,    \
                                                double*, double*);                                \
  template void channels_first_backward_input<T>(const T*, const T*, T*, const Geometry&,         \
                                                 const BackwardCoefficients<T>&);                 \
  template bool channels_first_forward_training<T>(const T*, T*, const Geometry&, const T*,       \
                                                   const T*, double, double*, double*);           \
  template bool channels_first_backward<T>(const T*, const T*, T*, const Geometry&, const T*,     \
                                           const T*, const T*, double, double*, double*);
BNORM_INSTANTIATE(float)
BNORM_INSTANTIATE(double)
#undef BNORM_INSTANTIATE

}  // namespace bnorm::kernels::simd
#endif  // HWY_ONCE
