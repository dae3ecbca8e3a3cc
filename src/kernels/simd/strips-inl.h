// Per-target loops of the channels-last statistics and backward sums over narrow rows (under
// kWideRowBytes, chunking.hpp): strips of one vector of channels walked down the rows with the
// accumulators in registers. Included once per target through channels_last-inl.h.
// Per-target include guard (Highway's idiom: toggles once per target).
#if defined(BNORM_KERNELS_SIMD_STRIPS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BNORM_KERNELS_SIMD_STRIPS_INL_H_
#undef BNORM_KERNELS_SIMD_STRIPS_INL_H_
#else
#define BNORM_KERNELS_SIMD_STRIPS_INL_H_
#endif

#include <hwy/highway.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "kernels/chunking.hpp"
#include "kernels/simd/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {
// Internal linkage: the families define templates of the same names and signatures
// (NormalizeRowsT, BackwardRowsT) in their own translation units.
namespace {

// The statistics loops walk one vector of channels at a time down the rows of a tile (a strip
// of Lanes(DD) channels, `lanes` of them valid), with the accumulators in registers: four per
// sum, one per row modulo 4, so the adds' latency is hidden. The strip's values are re-read by
// pass 2 from L1, and the next strip's are on the same cache lines.
template <class T>
HWY_INLINE VD LoadStrip(const T* HWY_RESTRICT p, size_t lanes, size_t N) {
  return lanes == N ? LoadWide(p) : LoadWideTail(p, lanes);
}

// sum over rows [r0, r1) of the strip at column k of x (row stride C).
template <class T>
HWY_INLINE VD StripSum(const T* HWY_RESTRICT x, std::int64_t C, std::int64_t r0, std::int64_t r1,
                       size_t lanes) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  VD s0 = hn::Zero(dd), s1 = s0, s2 = s0, s3 = s0;
  std::int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    s0 = hn::Add(s0, LoadStrip(x + r * C, lanes, N));
    s1 = hn::Add(s1, LoadStrip(x + (r + 1) * C, lanes, N));
    s2 = hn::Add(s2, LoadStrip(x + (r + 2) * C, lanes, N));
    s3 = hn::Add(s3, LoadStrip(x + (r + 3) * C, lanes, N));
  }
  for (; r < r1; ++r) s0 = hn::Add(s0, LoadStrip(x + r * C, lanes, N));
  return hn::Add(hn::Add(s0, s1), hn::Add(s2, s3));
}

// residual = sum (x - mean), square = sum (x - mean)^2 over rows [r0, r1) of the strip.
// Lanes past `lanes` load 0 and give residual -n*mean, square n*mean^2: never read.
template <class T>
HWY_INLINE void StripResiduals(const T* HWY_RESTRICT x, std::int64_t C, std::int64_t r0,
                               std::int64_t r1, size_t lanes, VD mean, VD& residual, VD& square) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  VD a0 = hn::Zero(dd), a1 = a0, a2 = a0, a3 = a0;
  VD q0 = a0, q1 = a0, q2 = a0, q3 = a0;
  std::int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const VD d0 = hn::Sub(LoadStrip(x + r * C, lanes, N), mean);
    const VD d1 = hn::Sub(LoadStrip(x + (r + 1) * C, lanes, N), mean);
    const VD d2 = hn::Sub(LoadStrip(x + (r + 2) * C, lanes, N), mean);
    const VD d3 = hn::Sub(LoadStrip(x + (r + 3) * C, lanes, N), mean);
    a0 = hn::Add(a0, d0);
    a1 = hn::Add(a1, d1);
    a2 = hn::Add(a2, d2);
    a3 = hn::Add(a3, d3);
    q0 = hn::MulAdd(d0, d0, q0);
    q1 = hn::MulAdd(d1, d1, q1);
    q2 = hn::MulAdd(d2, d2, q2);
    q3 = hn::MulAdd(d3, d3, q3);
  }
  for (; r < r1; ++r) {
    const VD d = hn::Sub(LoadStrip(x + r * C, lanes, N), mean);
    a0 = hn::Add(a0, d);
    q0 = hn::MulAdd(d, d, q0);
  }
  residual = hn::Add(hn::Add(a0, a1), hn::Add(a2, a3));
  square = hn::Add(hn::Add(q0, q1), hn::Add(q2, q3));
}

// Moments of channels [c0, c0 + width) over row leaves [first, last) of `leaf` rows each,
// merged left to right into acc[0..width).
template <class T>
void TileMomentsStrips(const T* x, const Geometry& g, std::int64_t c0, std::int64_t width,
                       std::int64_t first, std::int64_t last, std::int64_t leaf,
                       const PartialRows& out, double* count) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  HWY_ALIGN double mean[HWY_MAX_BYTES / sizeof(double)];
  HWY_ALIGN double residual[HWY_MAX_BYTES / sizeof(double)];
  HWY_ALIGN double square[HWY_MAX_BYTES / sizeof(double)];
  const auto w = static_cast<size_t>(width);
  // Narrow rows: fewer than kWideRowBytes / sizeof(float) channels.
  std::array<Partial, kWideRowBytes / sizeof(float)> acc{};
  for (std::int64_t l = first; l < last; ++l) {
    const std::int64_t r0 = l * leaf;
    const std::int64_t r1 = std::min(g.outer, r0 + leaf);
    const double n = static_cast<double>(r1 - r0);
    const VD vn = hn::Set(dd, n);
    for (size_t k = 0; k < w; k += N) {
      const size_t lanes = std::min(N, w - k);
      const T* strip = x + c0 + static_cast<std::int64_t>(k);
      const VD m = hn::Div(StripSum(strip, g.channels, r0, r1, lanes), vn);
      VD rs, sq;
      StripResiduals(strip, g.channels, r0, r1, lanes, m, rs, sq);
      hn::Store(m, dd, mean);
      hn::Store(rs, dd, residual);
      hn::Store(sq, dd, square);
      for (size_t j = 0; j < lanes; ++j) {
        acc[k + j] = merge_chunks(acc[k + j], leaf_moments(n, mean[j], residual[j], square[j]));
      }
    }
  }
  *count = acc[0].count;
  for (size_t k = 0; k < w; ++k) {
    out.mean[k] = acc[k].mean;
    out.mean_lo[k] = acc[k].mean_lo;
    out.m2[k] = acc[k].m2;
  }
}

// s += dy, s_xc += dy * (x - mean) for channels [c0, c0 + width), rows [r0, r1): strips of one
// vector of channels down the rows, two accumulators per sum.
template <class T>
void RowSumsStrips(const T* x, const T* dy, const Geometry& g, std::int64_t c0, std::int64_t width,
                   std::int64_t r0, std::int64_t r1, const T* mean, double* s_out,
                   double* s_xc_out) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  const std::int64_t C = g.channels;
  const auto w = static_cast<size_t>(width);
  HWY_ALIGN double m[HWY_MAX_BYTES / sizeof(double)] = {};
  HWY_ALIGN double s[HWY_MAX_BYTES / sizeof(double)];
  HWY_ALIGN double s_xc[HWY_MAX_BYTES / sizeof(double)];
  for (size_t k = 0; k < w; k += N) {
    const size_t lanes = std::min(N, w - k);
    const std::int64_t c = c0 + static_cast<std::int64_t>(k);
    for (size_t j = 0; j < lanes; ++j)
      m[j] = static_cast<double>(mean[c + static_cast<std::int64_t>(j)]);
    const VD vm = hn::Load(dd, m);
    VD a0 = hn::Zero(dd), a1 = a0, b0 = a0, b1 = a0;
    std::int64_t r = r0;
    for (; r + 2 <= r1; r += 2) {
      const VD d0 = LoadStrip(dy + r * C + c, lanes, N);
      const VD d1 = LoadStrip(dy + (r + 1) * C + c, lanes, N);
      a0 = hn::Add(a0, d0);
      a1 = hn::Add(a1, d1);
      b0 = hn::MulAdd(d0, hn::Sub(LoadStrip(x + r * C + c, lanes, N), vm), b0);
      b1 = hn::MulAdd(d1, hn::Sub(LoadStrip(x + (r + 1) * C + c, lanes, N), vm), b1);
    }
    if (r < r1) {
      const VD d0 = LoadStrip(dy + r * C + c, lanes, N);
      a0 = hn::Add(a0, d0);
      b0 = hn::MulAdd(d0, hn::Sub(LoadStrip(x + r * C + c, lanes, N), vm), b0);
    }
    hn::Store(hn::Add(a0, a1), dd, s);
    hn::Store(hn::Add(b0, b1), dd, s_xc);
    std::copy_n(s, lanes, s_out + k);
    std::copy_n(s_xc, lanes, s_xc_out + k);
  }
}

}  // namespace
}  // namespace bnorm::kernels::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
