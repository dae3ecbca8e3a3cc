// SIMD kernels for channels-last tensors (inner == 1: (N,C), NHWC, NDHWC).
//
// x is a row-major matrix of `outer` rows by C channels, so every loop vectorizes along C, with
// per-channel coefficients loaded as vectors and a partial vector at the end of each row.
//
//   moments         tiles of rows_per_tile(width) rows x one block of up to kChannelBlock
//                   channels (chunking.hpp), each read twice while it sits in L2: pass 1 sums,
//                   pass 2 residuals and squares about the tile mean, with per-channel double
//                   accumulators in L1; pass 2 prefetches the next tile. Tiles merge left to
//                   right inside a group of row leaves, groups merge in a fixed tree. Tasks are
//                   (channel block, group) pairs.
//   normalize       y = ((x - mean_hi) - mean_lo) * a + b row by row; tasks are row blocks.
//                   Outputs of kStreamBytes and more go out with non-temporal stores when every
//                   row is whole vectors at aligned addresses (parallel.hpp).
//   backward_sums   per (channel block, group): sum dy and sum dy * (x - mean) in double.
//   backward_input  dx = k_dy * dy + k_xc * (x - mean) + k_0 row by row.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/simd/channels_last.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Highway must come after foreach_target.h.
#include <hwy/highway.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "kernels/chunking.hpp"
#include "kernels/simd/simd-inl.h"
#include "kernels/simd/simd.hpp"
#include "scratch.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {
namespace {

// Two traversals of a tile, chosen by kWideRowBytes (chunking.hpp).

// The wide traversals read whole rows in memory order and keep per-channel accumulators in the
// task's scratch. They take kRowBlock rows per accumulator update: the partial sums of a block
// stay in registers, so the accumulators (which no longer fit in L1 beside the streaming rows
// from C = 1024 floats on) are loaded and stored once per kRowBlock rows of x.
// Measured at 1 thread, NHWC float (us, before -> after): moments 32x2048x7x7 918 -> 399,
// 32x1024x14x14 2,128 -> 1,004.
constexpr int kRowBlock = 8;
// Both wide traversals prefetch whole blocks of rows about kRowPrefetchBytes ahead, and at least
// one block ahead: the hardware prefetcher alone, seeing eight interleaved row streams, left the
// bus idle a third of the time. Measured at 1 thread, NHWC float (us, before -> after): moments
// 32x64x112x112 7,500 -> 3,450, 32x512x28x28 3,420 -> 1,820; sums C = 64 1,720 -> 1,190, C = 128
// 1,070 -> 580, C = 512 4,970 -> 4,070 (distances of 16 and 32 KiB measured no better overall).
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
// the same sums in loops over an array of vectors measured 1.7x slower (spilled registers).
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
      constexpr size_t kLine = 64 / sizeof(T);
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
      constexpr size_t kLine = 64 / sizeof(T);
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

template <class T>
void TileMomentsT(const T* x, const Geometry& g, std::int64_t c0, std::int64_t width,
                  std::int64_t first, std::int64_t last, std::int64_t leaf, const PartialRows& out,
                  double* count) {
  if (wide_rows<T>(g)) {
    TileMomentsWide(x, g, c0, width, first, last, leaf, out, count);
  } else {
    TileMomentsStrips(x, g, c0, width, first, last, leaf, out, count);
  }
}

template <class T>
void RowSumsT(const T* x, const T* dy, const Geometry& g, std::int64_t c0, std::int64_t width,
              std::int64_t r0, std::int64_t r1, const T* mean, double* s_out, double* s_xc_out) {
  if (wide_rows<T>(g)) {
    RowSumsWide(x, dy, g, c0, width, r0, r1, mean, s_out, s_xc_out);
  } else {
    RowSumsStrips(x, dy, g, c0, width, r0, r1, mean, s_out, s_xc_out);
  }
}

// Non-temporal stores need every vector store aligned: rows of whole vectors from an aligned y.
template <class T>
HWY_INLINE bool RowsStreamable(const T* y, const Geometry& g) {
  const hn::ScalableTag<T> d;
  const size_t N = hn::Lanes(d);
  return static_cast<size_t>(g.channels) % N == 0 &&
         reinterpret_cast<std::uintptr_t>(y) % (N * sizeof(T)) == 0;
}

template <bool kStream, class D, class V, class T>
HWY_INLINE void StoreRowVector(V v, D d, T* p) {
  if constexpr (kStream) {
    hn::Stream(v, d, p);
  } else {
    hn::StoreU(v, d, p);
  }
}

// Rows [r0, r1); mode 0: plain, 1: relu, 2: add z then relu. kStream: non-temporal stores (only
// when RowsStreamable: then a row has no tail).
template <bool kRelu, bool kAdd, bool kStream, class T>
HWY_INLINE void NormalizeRowsMode(const T* x, T* y, const T* z, const Geometry& g, std::int64_t r0,
                                  std::int64_t r1, const T* HWY_RESTRICT mean_hi,
                                  const T* HWY_RESTRICT mean_lo, const T* HWY_RESTRICT a,
                                  const T* HWY_RESTRICT b) {
  const hn::ScalableTag<T> d;
  const size_t N = hn::Lanes(d);
  const auto C = static_cast<size_t>(g.channels);
  const auto zero = hn::Zero(d);
  for (std::int64_t r = r0; r < r1; ++r) {
    const T* in = x + r * g.channels;
    T* out = y + r * g.channels;
    const T* zr = kAdd ? z + r * g.channels : nullptr;
    size_t c = 0;
    for (; c + N <= C; c += N) {
      auto v = hn::MulAdd(hn::Sub(hn::Sub(hn::LoadU(d, in + c), hn::LoadU(d, mean_hi + c)),
                                  hn::LoadU(d, mean_lo + c)),
                          hn::LoadU(d, a + c), hn::LoadU(d, b + c));
      if constexpr (kAdd) v = hn::Add(v, hn::LoadU(d, zr + c));
      if constexpr (kRelu) v = hn::Max(v, zero);
      StoreRowVector<kStream>(v, d, out + c);
    }
    if (c < C) {
      const size_t m = C - c;
      auto v = hn::MulAdd(hn::Sub(hn::Sub(LoadTail(d, in + c, m), LoadTail(d, mean_hi + c, m)),
                                  LoadTail(d, mean_lo + c, m)),
                          LoadTail(d, a + c, m), LoadTail(d, b + c, m));
      if constexpr (kAdd) v = hn::Add(v, LoadTail(d, zr + c, m));
      if constexpr (kRelu) v = hn::Max(v, zero);
      StoreTail(v, d, out + c, m);
    }
  }
}

template <bool kStream, class T>
void NormalizeRowsStream(const T* x, T* y, const T* z, const Geometry& g, std::int64_t r0,
                         std::int64_t r1, const T* mean_hi, const T* mean_lo, const T* a,
                         const T* b, int mode) {
  if (mode == 0) {
    NormalizeRowsMode<false, false, kStream>(x, y, z, g, r0, r1, mean_hi, mean_lo, a, b);
  } else if (mode == 1) {
    NormalizeRowsMode<true, false, kStream>(x, y, z, g, r0, r1, mean_hi, mean_lo, a, b);
  } else {
    NormalizeRowsMode<true, true, kStream>(x, y, z, g, r0, r1, mean_hi, mean_lo, a, b);
  }
}

template <class T>
void NormalizeRowsT(const T* x, T* y, const T* z, const Geometry& g, std::int64_t r0,
                    std::int64_t r1, const T* mean_hi, const T* mean_lo, const T* a, const T* b,
                    int mode, bool stream) {
  WithStores(stream && RowsStreamable(y, g), [&](auto kStream) {
    NormalizeRowsStream<decltype(kStream)::value>(x, y, z, g, r0, r1, mean_hi, mean_lo, a, b, mode);
  });
}

template <bool kStream, class T>
void BackwardRowsStream(const T* x, const T* dy, T* dx, const Geometry& g, std::int64_t r0,
                        std::int64_t r1, const T* HWY_RESTRICT mean, const T* HWY_RESTRICT k_dy,
                        const T* HWY_RESTRICT k_xc, const T* HWY_RESTRICT k_0) {
  const hn::ScalableTag<T> d;
  const size_t N = hn::Lanes(d);
  const auto C = static_cast<size_t>(g.channels);
  for (std::int64_t r = r0; r < r1; ++r) {
    const std::int64_t at = r * g.channels;
    size_t c = 0;
    for (; c + N <= C; c += N) {
      const auto xc = hn::Sub(hn::LoadU(d, x + at + c), hn::LoadU(d, mean + c));
      // k_dy * dy rounded, then added (see BackwardRun): constant dy in a constant channel -> 0.
      const auto v = hn::Add(hn::Mul(hn::LoadU(d, k_dy + c), hn::LoadU(d, dy + at + c)),
                             hn::MulAdd(hn::LoadU(d, k_xc + c), xc, hn::LoadU(d, k_0 + c)));
      StoreRowVector<kStream>(v, d, dx + at + c);
    }
    if (c < C) {
      const size_t m = C - c;
      const auto xc = hn::Sub(LoadTail(d, x + at + c, m), LoadTail(d, mean + c, m));
      const auto v = hn::Add(hn::Mul(LoadTail(d, k_dy + c, m), LoadTail(d, dy + at + c, m)),
                             hn::MulAdd(LoadTail(d, k_xc + c, m), xc, LoadTail(d, k_0 + c, m)));
      StoreTail(v, d, dx + at + c, m);
    }
  }
}

template <class T>
void BackwardRowsT(const T* x, const T* dy, T* dx, const Geometry& g, std::int64_t r0,
                   std::int64_t r1, const T* mean, const T* k_dy, const T* k_xc, const T* k_0,
                   bool stream) {
  WithStores(stream && RowsStreamable(dx, g), [&](auto kStream) {
    BackwardRowsStream<decltype(kStream)::value>(x, dy, dx, g, r0, r1, mean, k_dy, k_xc, k_0);
  });
}

}  // namespace

#define BNORM_CL_ENTRY_POINTS(T, S)                                                          \
  void ClTileMoments##S(const T* x, const Geometry& g, std::int64_t c0, std::int64_t width,  \
                        std::int64_t first, std::int64_t last, std::int64_t leaf,            \
                        const PartialRows& out, double* count) {                             \
    TileMomentsT(x, g, c0, width, first, last, leaf, out, count);                            \
  }                                                                                          \
  void ClRowSums##S(const T* x, const T* dy, const Geometry& g, std::int64_t c0,             \
                    std::int64_t width, std::int64_t r0, std::int64_t r1, const T* mean,     \
                    double* s, double* s_xc) {                                               \
    RowSumsT(x, dy, g, c0, width, r0, r1, mean, s, s_xc);                                    \
  }                                                                                          \
  void ClNormalizeRows##S(const T* x, T* y, const T* z, const Geometry& g, std::int64_t r0,  \
                          std::int64_t r1, const T* mean_hi, const T* mean_lo, const T* a,   \
                          const T* b, int mode, bool stream) {                               \
    NormalizeRowsT(x, y, z, g, r0, r1, mean_hi, mean_lo, a, b, mode, stream);                \
  }                                                                                          \
  void ClBackwardRows##S(const T* x, const T* dy, T* dx, const Geometry& g, std::int64_t r0, \
                         std::int64_t r1, const T* mean, const T* k_dy, const T* k_xc,       \
                         const T* k_0, bool stream) {                                        \
    BackwardRowsT(x, dy, dx, g, r0, r1, mean, k_dy, k_xc, k_0, stream);                      \
  }
void ClMergeRows(const PartialRows& a, const PartialRows& b, std::int64_t width,
                 const MergeWeights& weights) {
  MergeRows(a, b.mean, b.mean_lo, b.m2, static_cast<size_t>(width), weights);
}
BNORM_CL_ENTRY_POINTS(float, F)
BNORM_CL_ENTRY_POINTS(double, D)
#undef BNORM_CL_ENTRY_POINTS

}  // namespace bnorm::kernels::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <type_traits>

#include "kernels/simd/parallel.hpp"
#include "scratch.hpp"

namespace bnorm::kernels::simd {

HWY_EXPORT(ClMergeRows);
HWY_EXPORT(ClTileMomentsF);
HWY_EXPORT(ClTileMomentsD);
HWY_EXPORT(ClRowSumsF);
HWY_EXPORT(ClRowSumsD);
HWY_EXPORT(ClNormalizeRowsF);
HWY_EXPORT(ClNormalizeRowsD);
HWY_EXPORT(ClBackwardRowsF);
HWY_EXPORT(ClBackwardRowsD);

namespace {

template <class T>
void normalize_rows(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k,
                    const Epilogue<T>& e) {
  const std::int64_t per_task = rows_per_task(g.channels);
  const std::int64_t tasks = (g.outer + per_task - 1) / per_task;
  const int mode = static_cast<int>(e.activation);
  const bool stream = stream_output<T>(g);
  for_tasks(tasks, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t r0 = t * per_task;
    const std::int64_t r1 = std::min(g.outer, r0 + per_task);
    if constexpr (std::is_same_v<T, float>) {
      HWY_DYNAMIC_DISPATCH(ClNormalizeRowsF)
      (x, y, e.z, g, r0, r1, k.mean_hi, k.mean_lo, k.a, k.b, mode, stream);
    } else {
      HWY_DYNAMIC_DISPATCH(ClNormalizeRowsD)
      (x, y, e.z, g, r0, r1, k.mean_hi, k.mean_lo, k.a, k.b, mode, stream);
    }
  });
}

}  // namespace

bool channels_last_applies(const Geometry& g) {
  return g.inner == 1;
}

template <class T>
void channels_last_moments(const T* x, const Geometry& g, Moments* moments) {
  const TilePlan plan = plan_tiles(g);
  const std::int64_t groups = plan.rows.groups;
  if (groups == 0) {
    std::fill(moments, moments + g.channels, Moments{});
    return;
  }
  const std::int64_t C = g.channels;
  // Each group's partial moments of every channel, as structure of arrays: [group * C + c].
  const auto partials = scratch<double>(ScratchSlot::kPartials, 3 * groups * C);
  const PartialRows rows{partials.data(), partials.data() + groups * C,
                         partials.data() + 2 * groups * C};
  // Wide rows are read whole, in memory order, one pass per tile (TileMomentsWide): a block of
  // kChannelBlock channels would read a strided slice of every row.
  const std::int64_t width_per_task = wide_rows<T>(g) ? C : plan.width;
  const std::int64_t blocks = (C + width_per_task - 1) / width_per_task;
  const auto counts = scratch<double>(ScratchSlot::kPartials2, blocks * groups);
  for_tasks(blocks * groups, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t group = t % groups;
    const std::int64_t c0 = (t / groups) * width_per_task;
    const std::int64_t width = std::min(width_per_task, C - c0);
    const std::int64_t first = group * plan.rows.leaves_per_group;
    const std::int64_t last = std::min(plan.rows.leaves, first + plan.rows.leaves_per_group);
    const PartialRows out = rows.at(group * C + c0);
    // Every block of a group covers the same rows, so has the same count: counts[t] for
    // t < groups (block 0) is the group's.
    if constexpr (std::is_same_v<T, float>) {
      HWY_DYNAMIC_DISPATCH(ClTileMomentsF)
      (x, g, c0, width, first, last, plan.rows.leaf, out, &counts[t]);
    } else {
      HWY_DYNAMIC_DISPATCH(ClTileMomentsD)
      (x, g, c0, width, first, last, plan.rows.leaf, out, &counts[t]);
    }
  });
  const auto merge_rows = [](const PartialRows& a, const PartialRows& b, std::int64_t width,
                             const MergeWeights& weights) {
    HWY_DYNAMIC_DISPATCH(ClMergeRows)(a, b, width, weights);
  };
  merge_partial_rows(rows, counts.data(), groups, C, merge_rows, moments);
}

template <class T>
void channels_last_normalize(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k,
                             const Epilogue<T>& e) {
  normalize_rows(x, y, g, k, e);
}

template <class T>
void channels_last_backward_sums(const T* x, const T* dy, const Geometry& g, const T* mean,
                                 double* sum_dy, double* sum_dy_xc) {
  const TilePlan plan = plan_tiles(g);
  const std::int64_t groups = plan.rows.groups;
  const std::int64_t C = g.channels;
  if (groups == 0) {
    std::fill(sum_dy, sum_dy + C, 0.0);
    std::fill(sum_dy_xc, sum_dy_xc + C, 0.0);
    return;
  }
  const auto s = scratch<double>(ScratchSlot::kPartials, groups * C);
  const auto s_xc = scratch<double>(ScratchSlot::kPartials2, groups * C);
  const std::int64_t group_rows = plan.rows.leaves_per_group * plan.rows.leaf;
  // The sums take one pass, so a task can take whole rows, read in memory order, however wide:
  // blocks of kChannelBlock channels would read a strided slice of every row (measured at 1
  // thread: NHWC 32x512x28x28 14.5 -> 3.7 ms, 32x1024x14x14 8.6 -> 4.1 ms). Each channel's sum
  // runs over the same rows in the same order either way, so the result does not change.
  const std::int64_t width_per_task = wide_rows<T>(g) ? C : plan.width;
  const std::int64_t blocks = (C + width_per_task - 1) / width_per_task;
  for_tasks(blocks * groups, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t group = t % groups;
    const std::int64_t c0 = (t / groups) * width_per_task;
    const std::int64_t width = std::min(width_per_task, C - c0);
    const std::int64_t r0 = group * group_rows;
    const std::int64_t r1 = std::min(g.outer, r0 + group_rows);
    double* ps = &s[group * C + c0];
    double* ps_xc = &s_xc[group * C + c0];
    if constexpr (std::is_same_v<T, float>) {
      HWY_DYNAMIC_DISPATCH(ClRowSumsF)(x, dy, g, c0, width, r0, r1, mean, ps, ps_xc);
    } else {
      HWY_DYNAMIC_DISPATCH(ClRowSumsD)(x, dy, g, c0, width, r0, r1, mean, ps, ps_xc);
    }
  });
  tree_sum_rows(s.data(), groups, C);
  tree_sum_rows(s_xc.data(), groups, C);
  std::copy_n(s.data(), C, sum_dy);
  std::copy_n(s_xc.data(), C, sum_dy_xc);
}

template <class T>
void channels_last_backward_input(const T* x, const T* dy, T* dx, const Geometry& g,
                                  const BackwardCoefficients<T>& k) {
  const std::int64_t per_task = rows_per_task(g.channels);
  const std::int64_t tasks = (g.outer + per_task - 1) / per_task;
  const bool stream = stream_output<T>(g);
  for_tasks(tasks, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t r0 = t * per_task;
    const std::int64_t r1 = std::min(g.outer, r0 + per_task);
    if constexpr (std::is_same_v<T, float>) {
      HWY_DYNAMIC_DISPATCH(ClBackwardRowsF)
      (x, dy, dx, g, r0, r1, k.mean_w, k.k_dy_w, k.k_xc_w, k.k_0_w, stream);
    } else {
      HWY_DYNAMIC_DISPATCH(ClBackwardRowsD)
      (x, dy, dx, g, r0, r1, k.mean_w, k.k_dy_w, k.k_xc_w, k.k_0_w, stream);
    }
  });
}

#define BNORM_INSTANTIATE(T)                                                                     \
  template void channels_last_moments<T>(const T*, const Geometry&, Moments*);                   \
  template void channels_last_normalize<T>(const T*, T*, const Geometry&,                        \
                                           const NormalizeCoefficients<T>&, const Epilogue<T>&); \
  template void channels_last_backward_sums<T>(const T*, const T*, const Geometry&, const T*,    \
                                               double*, double*);                                \
  template void channels_last_backward_input<T>(const T*, const T*, T*, const Geometry&,         \
                                                const BackwardCoefficients<T>&);
BNORM_INSTANTIATE(float)
BNORM_INSTANTIATE(double)
#undef BNORM_INSTANTIATE

}  // namespace bnorm::kernels::simd
#endif  // HWY_ONCE
