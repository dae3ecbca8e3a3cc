// Per-target loops of the channels-last statistics and backward sums over wide rows (C values of
// at least kWideRowBytes, chunking.hpp): whole rows in memory order, a row block at a time.
// Included once per target through channels_last-inl.h.
// Per-target include guard (Highway's idiom: toggles once per target).
#if defined(BNORM_KERNELS_SIMD_WIDE_ROWS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BNORM_KERNELS_SIMD_WIDE_ROWS_INL_H_
#undef BNORM_KERNELS_SIMD_WIDE_ROWS_INL_H_
#else
#define BNORM_KERNELS_SIMD_WIDE_ROWS_INL_H_
#endif

#include <hwy/cache_control.h>
#include <hwy/highway.h>

#include <algorithm>
#include <cstdint>

#include "cache_line.hpp"
#include "kernels/chunking.hpp"
#include "kernels/simd/simd-inl.h"
#include "scratch.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {
// Internal linkage: the families define templates of the same names and signatures
// (NormalizeRowsT, BackwardRowsT) in their own translation units.
namespace {

// The wide traversals read whole rows in memory order and keep per-channel accumulators in the
// task's scratch. They take kRowBlock rows per accumulator update: the partial sums of a block
// stay in registers, so the accumulators (which no longer fit in L1 beside the streaming rows
// from C = 1024 floats on) are loaded and stored once per kRowBlock rows of x (docs/kernels.md:
// eight rows per update).
constexpr int kRowBlock = 8;
// Both wide traversals prefetch whole blocks of rows about kRowPrefetchBytes ahead, and at least
// one block ahead: the hardware prefetcher alone, seeing eight interleaved row streams, left the
// bus idle a third of the time (docs/kernels.md has the distances tried and the gains).
constexpr std::int64_t kRowPrefetchBytes = 8192;

// The prefetch distance of a traversal over blocks of kRowBlock rows of `width` of C channels:
// whole blocks, about kRowPrefetchBytes and at least one; none for a strip of channels (it reads
// only part of each line it would fetch).
template <class T>
class RowPrefetch {
 public:
  RowPrefetch(size_t width, std::int64_t C) : block_values_(kRowBlock * C) {
    if (width != static_cast<size_t>(C)) return;
    const std::int64_t block_bytes = block_values_ * static_cast<std::int64_t>(sizeof(T));
    blocks_ = std::max<std::int64_t>(1, kRowPrefetchBytes / block_bytes);
  }
  // Values ahead of the block at row r, 0 (none) where the prefetched block would pass row end.
  size_t Ahead(std::int64_t r, std::int64_t end) const {
    const bool room = r + (blocks_ + 1) * kRowBlock <= end;
    return static_cast<size_t>(room ? blocks_ * block_values_ : 0);
  }

 private:
  std::int64_t block_values_;
  std::int64_t blocks_ = 0;
};

// Loads of `width` channels at q + k widened to double, zeros past width.
template <class T>
HWY_INLINE VD LoadChannels(const T* HWY_RESTRICT q, size_t k, size_t width) {
  const size_t N = hn::Lanes(DD());
  if (k + N <= width) return LoadWide(q + k);
  return k < width ? LoadWideTail(q + k, width - k) : hn::Zero(DD());
}

// The block's sums written out for kRowBlock = 8 rows (a balanced tree, two multiply-add chains):
// the same sums in loops over an array of vectors spilled registers (docs/kernels.md).
HWY_INLINE VD Sum8(const VD (&d)[kRowBlock]) {
  return hn::Add(hn::Add(hn::Add(d[0], d[1]), hn::Add(d[2], d[3])),
                 hn::Add(hn::Add(d[4], d[5]), hn::Add(d[6], d[7])));
}

HWY_INLINE VD Dot8(const VD (&a)[kRowBlock], const VD (&b)[kRowBlock]) {
  const VD even =
      hn::MulAdd(a[6], b[6], hn::MulAdd(a[4], b[4], hn::MulAdd(a[2], b[2], hn::Mul(a[0], b[0]))));
  const VD odd =
      hn::MulAdd(a[7], b[7], hn::MulAdd(a[5], b[5], hn::MulAdd(a[3], b[3], hn::Mul(a[1], b[1]))));
  return hn::Add(even, odd);
}

// Accumulator arrays for `width` channels: whole vectors, on cache lines.
HWY_INLINE size_t AccumulatorLanes(size_t width) {
  const size_t N = hn::Lanes(DD());
  return padded_count<double>((width + N - 1) / N * N);
}

// One pass over `rows` (kRows if kRows > 0, else 1 to kRowBlock) rows at p, row stride C:
// with d = x - shift, sum[k] += sum of d and square[k] += sum of d * d for k < width. Lanes past
// width load 0 and have shift 0, so they add 0. A full block also prefetches the block `ahead`
// values on (0: none), a cache line of each of its rows per line of channels.
template <int kRows, class T>
HWY_INLINE void AddShiftedRows(const T* HWY_RESTRICT p, std::int64_t C, int rows, size_t width,
                               size_t ahead, const double* HWY_RESTRICT shift,
                               double* HWY_RESTRICT sum, double* HWY_RESTRICT square) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  for (size_t k = 0; k < width; k += N) {
    const VD s = hn::Load(dd, shift + k);
    VD total, squares;
    if constexpr (kRows == kRowBlock) {
      constexpr size_t kLine = kValuesPerLine<T>;
      if (ahead != 0 && k % kLine == 0) {
        const size_t at = ahead + k * kRowBlock;
        for (size_t q = 0; q < kLine * kRowBlock; q += kLine) hwy::Prefetch(p + at + q);
      }
      VD d[kRowBlock];
      for (int j = 0; j < kRowBlock; ++j) d[j] = hn::Sub(LoadChannels(p + j * C, k, width), s);
      squares = Dot8(d, d);
      total = Sum8(d);
    } else {
      total = hn::Sub(LoadChannels(p, k, width), s);
      squares = hn::Mul(total, total);
      for (int j = 1; j < rows; ++j) {
        const VD e = hn::Sub(LoadChannels(p + j * C, k, width), s);
        total = hn::Add(total, e);
        squares = hn::MulAdd(e, e, squares);
      }
    }
    hn::Store(hn::Add(hn::Load(dd, sum + k), total), dd, sum + k);
    hn::Store(hn::Add(hn::Load(dd, square + k), squares), dd, square + k);
  }
}

// Row-major moments for wide rows, in one pass per tile: sums of d = x - shift and of d * d,
// where the shift of each channel is its value in the tile's first row. Then
//   mean = shift + sum d / n,   M2 = sum d^2 - (sum d)^2 / n   (leaf_moments).
// This is the two-pass formula with the first pass's mean replaced by a value of the tile, so
// it needs no second read. It loses digits only in proportion to (mean - shift)^2 / variance,
// which for a shift taken from the tile is at most n - 1 (Samuelson's inequality): with double
// sums over a tile of n <= 1024 rows the relative error of M2 stays below n^2 * 2^-53 (1.2e-10),
// far below float's rounding, whatever the data (docs/numerics.md). Float values and their
// differences are exact in double, so for float data the squares are exact too.
template <class T>
void TileMomentsWide(const T* x, const Geometry& g, std::int64_t c0, std::int64_t width,
                     std::int64_t first, std::int64_t last, std::int64_t leaf,
                     const PartialRows& out, double* count) {
  const DD dd;
  const size_t lanes = hn::Lanes(dd);
  const auto w = static_cast<size_t>(width);
  // The accumulators' lanes that the vector loops touch: width rounded up to whole vectors,
  // three arrays on cache lines in this thread's scratch (a block may be a whole row).
  const size_t padded = AccumulatorLanes(w);
  const auto accumulators = scratch<double>(ScratchSlot::kAccumulators, 3 * padded);
  double* HWY_RESTRICT shift = accumulators.data();
  double* HWY_RESTRICT sum = shift + padded;
  double* HWY_RESTRICT square = sum + padded;
  std::fill_n(shift, padded, 0.0);
  *count = 0;
  // Prefetches may run past the tile into the next one, never past the tensor.
  const RowPrefetch<T> prefetch(w, g.channels);
  for (std::int64_t l = first; l < last; ++l) {
    const std::int64_t r0 = l * leaf;
    const std::int64_t r1 = std::min(g.outer, r0 + leaf);
    const double n = static_cast<double>(r1 - r0);
    const T* first_row = x + r0 * g.channels + c0;
    for (size_t k = 0; k < w; k += lanes) hn::Store(LoadChannels(first_row, k, w), dd, shift + k);
    std::fill_n(sum, padded, 0.0);
    std::fill_n(square, padded, 0.0);
    std::int64_t r = r0;
    for (; r + kRowBlock <= r1; r += kRowBlock) {
      AddShiftedRows<kRowBlock>(x + r * g.channels + c0, g.channels, kRowBlock, w,
                                prefetch.Ahead(r, g.outer), shift, sum, square);
    }
    if (r < r1) {
      AddShiftedRows<0>(x + r * g.channels + c0, g.channels, static_cast<int>(r1 - r), w, 0, shift,
                        sum, square);
    }
    // leaf_moments (chunking.hpp) for whole vectors of channels, the same operations: per
    // channel, in scalars, its divisions would cost small tiles as much as the pass over the
    // data. The mean pair goes to (sum, shift), M2 to square.
    const VD vn = hn::Set(dd, n);
    const VD zero = hn::Zero(dd);
    for (size_t k = 0; k < w; k += lanes) {
      const VD s = hn::Load(dd, sum + k);
      const VD m2 = hn::Sub(hn::Load(dd, square + k), hn::Div(hn::Mul(s, s), vn));
      hn::Store(hn::IfThenElse(hn::Gt(m2, zero), m2, zero), dd, square + k);
      VD hi, lo;
      TwoSum(hn::Load(dd, shift + k), hn::Div(s, vn), hi, lo);
      hn::Store(hi, dd, sum + k);
      hn::Store(lo, dd, shift + k);
    }
    // The first leaf is the group's start (merge(empty, m) is m); the others merge in vectors
    // (MergeRows), as every channel of a leaf has the same count.
    if (l == first) {
      std::copy_n(sum, w, out.mean);
      std::copy_n(shift, w, out.mean_lo);
      std::copy_n(square, w, out.m2);
      *count = n;
    } else {
      const MergeWeights weights = merge_weights(*count, n);
      MergeRows(out, sum, shift, square, w, weights);
      *count = weights.count;
    }
  }
}

// One pass over `rows` (kRows if kRows > 0, else 1 to kRowBlock) rows of x and dy at row offset
// p, row stride C: s[k] += sum of dy and s_xc[k] += sum of dy * (x - mean) for k < width. Zero dy
// lanes past width make the products zero whatever (0 - mean) is.
template <int kRows, class T>
HWY_INLINE void AddSumsRows(const T* HWY_RESTRICT x, const T* HWY_RESTRICT dy, std::int64_t C,
                            int rows, size_t width, size_t ahead, const double* HWY_RESTRICT mean,
                            double* HWY_RESTRICT s, double* HWY_RESTRICT s_xc) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  for (size_t k = 0; k < width; k += N) {
    const VD m = hn::Load(dd, mean + k);
    VD total, products;
    if constexpr (kRows == kRowBlock) {
      // Once per cache line of a row: prefetch as many lines of x and dy `ahead` values on,
      // walking the block `ahead` away in memory order.
      constexpr size_t kLine = kValuesPerLine<T>;
      if (ahead != 0 && k % kLine == 0) {
        const size_t at = ahead + k * kRowBlock;
        for (size_t q = 0; q < kLine * kRowBlock; q += kLine) {
          hwy::Prefetch(x + at + q);
          hwy::Prefetch(dy + at + q);
        }
      }
      VD d[kRowBlock], c[kRowBlock];
      for (int j = 0; j < kRowBlock; ++j) d[j] = LoadChannels(dy + j * C, k, width);
      for (int j = 0; j < kRowBlock; ++j) c[j] = hn::Sub(LoadChannels(x + j * C, k, width), m);
      products = Dot8(d, c);
      total = Sum8(d);
    } else {
      total = LoadChannels(dy, k, width);
      products = hn::Mul(total, hn::Sub(LoadChannels(x, k, width), m));
      for (int j = 1; j < rows; ++j) {
        const VD e = LoadChannels(dy + j * C, k, width);
        total = hn::Add(total, e);
        products = hn::MulAdd(e, hn::Sub(LoadChannels(x + j * C, k, width), m), products);
      }
    }
    hn::Store(hn::Add(hn::Load(dd, s + k), total), dd, s + k);
    hn::Store(hn::Add(hn::Load(dd, s_xc + k), products), dd, s_xc + k);
  }
}

// Row-major sums for wide rows.
template <class T>
void RowSumsWide(const T* x, const T* dy, const Geometry& g, std::int64_t c0, std::int64_t width,
                 std::int64_t r0, std::int64_t r1, const T* mean, double* s_out, double* s_xc_out) {
  const auto w = static_cast<size_t>(width);
  // A block may be a whole row of any width (channels_last_backward_sums): the accumulators
  // live in this thread's scratch, three arrays of width rounded up to whole vectors.
  const size_t padded = AccumulatorLanes(w);
  const auto accumulators = scratch<double>(ScratchSlot::kAccumulators, 3 * padded);
  double* HWY_RESTRICT m = accumulators.data();
  double* HWY_RESTRICT s = m + padded;
  double* HWY_RESTRICT s_xc = s + padded;
  std::fill_n(m, padded, 0.0);
  for (size_t k = 0; k < w; ++k)
    m[k] = static_cast<double>(mean[c0 + static_cast<std::int64_t>(k)]);
  std::fill_n(s, padded, 0.0);
  std::fill_n(s_xc, padded, 0.0);
  const std::int64_t C = g.channels;
  // Prefetches stay within [r0, r1): the last blocks prefetch nothing.
  const RowPrefetch<T> prefetch(w, C);
  std::int64_t r = r0;
  for (; r + kRowBlock <= r1; r += kRowBlock) {
    AddSumsRows<kRowBlock>(x + r * C + c0, dy + r * C + c0, C, kRowBlock, w, prefetch.Ahead(r, r1),
                           m, s, s_xc);
  }
  if (r < r1) {
    AddSumsRows<0>(x + r * C + c0, dy + r * C + c0, C, static_cast<int>(r1 - r), w, 0, m, s, s_xc);
  }
  std::copy_n(s, w, s_out);
  std::copy_n(s_xc, w, s_xc_out);
}

}  // namespace
}  // namespace bnorm::kernels::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
