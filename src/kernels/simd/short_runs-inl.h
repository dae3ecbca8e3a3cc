// Per-target loops of the channels-first short runs, included once per target by
// channels_first.cpp.
// Per-target include guard (Highway's idiom: toggles once per target).
#if defined(BNORM_KERNELS_SIMD_SHORT_RUNS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BNORM_KERNELS_SIMD_SHORT_RUNS_INL_H_
#undef BNORM_KERNELS_SIMD_SHORT_RUNS_INL_H_
#else
#define BNORM_KERNELS_SIMD_SHORT_RUNS_INL_H_
#endif

#include <hwy/highway.h>

#include <algorithm>
#include <cstdint>

#include "kernels/chunking.hpp"
#include "kernels/simd/simd-inl.h"
#include "scratch.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {
// Internal linkage: the families define templates of the same names and signatures
// (NormalizeRowsT, BackwardRowsT) in their own translation units.
namespace {

// Short runs (channels_first.cpp's host side decides: float NCHW with a small H*W such as 7x7).
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
}  // namespace bnorm::kernels::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
