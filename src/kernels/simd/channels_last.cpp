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
#include <cstdint>

#include "kernels/chunking.hpp"
#include "kernels/simd/simd-inl.h"
#include "kernels/simd/simd.hpp"
#include "scratch.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {
namespace {

// Two traversals of a tile, chosen by kWideRowBytes (chunking.hpp).

// The wide traversal reads rows in memory order and keeps per-channel accumulators in L1. It
// takes four rows per accumulator update, so the accumulators' loads and stores are a quarter
// of the loads of x: rows (x0 + x1) + (x2 + x3) are added first, then the partial to acc.

// acc[k] += row[k] over `rows` (1 to 4) rows at p, stride C, for k < width, in double; acc has
// room for whole vectors past width.
template <class T>
HWY_INLINE void AddRows(const T* HWY_RESTRICT p, std::int64_t C, int rows, size_t width,
                        double* HWY_RESTRICT acc) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  const auto load = [&](const T* q, size_t k) {
    return k + N <= width ? LoadWide(q + k) : LoadWideTail(q + k, width - k);
  };
  for (size_t k = 0; k < width; k += N) {
    VD v;
    if (rows == 4) {
      v = hn::Add(hn::Add(load(p, k), load(p + C, k)),
                  hn::Add(load(p + 2 * C, k), load(p + 3 * C, k)));
    } else {
      v = load(p, k);
      for (int j = 1; j < rows; ++j) v = hn::Add(v, load(p + j * C, k));
    }
    hn::Store(hn::Add(hn::Load(dd, acc + k), v), dd, acc + k);
  }
}

// r = row - mean over `rows` (1 to 4) rows at p, stride C: residual[k] += r, square[k] += r * r
// for k < width. Lanes past width load 0 and are masked out.
template <class T>
HWY_INLINE void AddResidualRows(const T* HWY_RESTRICT p, std::int64_t C, int rows, size_t width,
                                const double* HWY_RESTRICT mean, double* HWY_RESTRICT residual,
                                double* HWY_RESTRICT square) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  for (size_t k = 0; k < width; k += N) {
    const bool full = k + N <= width;
    const VD m = hn::Load(dd, mean + k);
    const auto diff = [&](const T* q) {
      return full ? hn::Sub(LoadWide(q + k), m)
                  : hn::IfThenElseZero(hn::FirstN(dd, width - k),
                                       hn::Sub(LoadWideTail(q + k, width - k), m));
    };
    VD rs = hn::Load(dd, residual + k);
    VD sq = hn::Load(dd, square + k);
    if (rows == 4) {
      const VD d0 = diff(p), d1 = diff(p + C), d2 = diff(p + 2 * C), d3 = diff(p + 3 * C);
      rs = hn::Add(rs, hn::Add(hn::Add(d0, d1), hn::Add(d2, d3)));
      sq = hn::Add(sq, hn::MulAdd(d3, d3, hn::MulAdd(d2, d2, hn::MulAdd(d1, d1, hn::Mul(d0, d0)))));
    } else {
      for (int j = 0; j < rows; ++j) {
        const VD d = diff(p + j * C);
        rs = hn::Add(rs, d);
        sq = hn::MulAdd(d, d, sq);
      }
    }
    hn::Store(rs, dd, residual + k);
    hn::Store(sq, dd, square + k);
  }
}

// Accumulators for one channel block, padded to whole vectors.
constexpr size_t kPadded = static_cast<size_t>(kChannelBlock) + HWY_MAX_BYTES / sizeof(double);

// Row-major moments for wide rows.
template <class T>
void TileMomentsWide(const T* x, const Geometry& g, std::int64_t c0, std::int64_t width,
                     std::int64_t first, std::int64_t last, std::int64_t leaf, Moments* acc) {
  HWY_ALIGN double sum[kPadded];
  HWY_ALIGN double mean[kPadded];
  HWY_ALIGN double residual[kPadded];
  HWY_ALIGN double square[kPadded];
  const auto w = static_cast<size_t>(width);
  // The accumulators' lanes that the vector loops touch: width rounded up to whole vectors.
  const size_t lanes = hn::Lanes(DD());
  const size_t padded = (w + lanes - 1) / lanes * lanes;
  if (first >= last) std::fill(acc, acc + width, Moments{});
  for (std::int64_t l = first; l < last; ++l) {
    const std::int64_t r0 = l * leaf;
    const std::int64_t r1 = std::min(g.outer, r0 + leaf);
    const double n = static_cast<double>(r1 - r0);
    std::fill_n(sum, padded, 0.0);
    for (std::int64_t r = r0; r < r1; r += 4) {
      AddRows(x + r * g.channels + c0, g.channels,
              static_cast<int>(std::min<std::int64_t>(4, r1 - r)), w, sum);
    }
    for (size_t k = 0; k < padded; ++k) mean[k] = sum[k] / n;
    std::fill_n(residual, padded, 0.0);
    std::fill_n(square, padded, 0.0);
    for (std::int64_t r = r0; r < r1; r += 4) {
      // Pass 2 reads from cache: meanwhile, the same rows of the next tile are prefetched, so
      // the memory bus stays busy (as LeafMoments does for channels-first).
      const std::int64_t ahead = r + leaf;
      for (std::int64_t j = ahead; j < std::min(ahead + 4, g.outer); ++j) {
        const T* row = x + j * g.channels + c0;
        for (size_t k = 0; k < w; k += 64 / sizeof(T)) hwy::Prefetch(row + k);
      }
      AddResidualRows(x + r * g.channels + c0, g.channels,
                      static_cast<int>(std::min<std::int64_t>(4, r1 - r)), w, mean, residual,
                      square);
    }
    // leaf_moments for whole vectors of channels (the same operations, so the same values): its
    // two divisions per channel, one after the other, would cost small tiles as much as the
    // passes over the data.
    const DD dd;
    const VD vn = hn::Set(dd, n);
    const VD zero = hn::Zero(dd);
    for (size_t k = 0; k < padded; k += lanes) {
      const VD r = hn::Load(dd, residual + k);
      const VD m2 = hn::Sub(hn::Load(dd, square + k), hn::Div(hn::Mul(r, r), vn));
      hn::Store(hn::IfThenElse(hn::Gt(m2, zero), m2, zero), dd, square + k);
      hn::Store(hn::Add(hn::Load(dd, mean + k), hn::Div(r, vn)), dd, mean + k);
    }
    // The first leaf is the group's start (merge(empty, m) is m).
    for (size_t k = 0; k < w; ++k) {
      const Moments m{n, mean[k], square[k]};
      acc[k] = l == first ? m : merge(acc[k], m);
    }
  }
}

// Row-major sums for wide rows.
template <class T>
void RowSumsWide(const T* x, const T* dy, const Geometry& g, std::int64_t c0, std::int64_t width,
                 std::int64_t r0, std::int64_t r1, const T* mean, double* s_out, double* s_xc_out) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  const auto w = static_cast<size_t>(width);
  // A block may be a whole row of any width (channels_last_backward_sums): the accumulators
  // live in this thread's scratch, three arrays of width rounded up to whole vectors.
  const size_t padded = (w + N - 1) / N * N;
  const auto accumulators = scratch<double>(ScratchSlot::kAccumulators, 3 * padded);
  double* HWY_RESTRICT m = accumulators.data();
  double* HWY_RESTRICT s = m + padded;
  double* HWY_RESTRICT s_xc = s + padded;
  std::fill_n(m, padded, 0.0);
  for (size_t k = 0; k < w; ++k)
    m[k] = static_cast<double>(mean[c0 + static_cast<std::int64_t>(k)]);
  std::fill_n(s, padded, 0.0);
  std::fill_n(s_xc, padded, 0.0);
  for (std::int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * g.channels + c0;
    const T* dr = dy + r * g.channels + c0;
    size_t k = 0;
    for (; k + N <= w; k += N) {
      const VD d = LoadWide(dr + k);
      hn::Store(hn::Add(hn::Load(dd, s + k), d), dd, s + k);
      hn::Store(
          hn::MulAdd(d, hn::Sub(LoadWide(xr + k), hn::Load(dd, m + k)), hn::Load(dd, s_xc + k)), dd,
          s_xc + k);
    }
    if (k < w) {
      // Zero dy lanes make the product zero whatever (0 - mean) is.
      const VD d = LoadWideTail(dr + k, w - k);
      hn::Store(hn::Add(hn::Load(dd, s + k), d), dd, s + k);
      hn::Store(hn::MulAdd(d, hn::Sub(LoadWideTail(xr + k, w - k), hn::Load(dd, m + k)),
                           hn::Load(dd, s_xc + k)),
                dd, s_xc + k);
    }
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
                       std::int64_t first, std::int64_t last, std::int64_t leaf, Moments* acc) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  HWY_ALIGN double mean[HWY_MAX_BYTES / sizeof(double)];
  HWY_ALIGN double residual[HWY_MAX_BYTES / sizeof(double)];
  HWY_ALIGN double square[HWY_MAX_BYTES / sizeof(double)];
  const auto w = static_cast<size_t>(width);
  std::fill(acc, acc + width, Moments{});
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
        acc[k + j] = merge(acc[k + j], leaf_moments(n, mean[j], residual[j], square[j]));
      }
    }
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
                  std::int64_t first, std::int64_t last, std::int64_t leaf, Moments* acc) {
  if (g.channels * static_cast<std::int64_t>(sizeof(T)) >= kWideRowBytes) {
    TileMomentsWide(x, g, c0, width, first, last, leaf, acc);
  } else {
    TileMomentsStrips(x, g, c0, width, first, last, leaf, acc);
  }
}

template <class T>
void RowSumsT(const T* x, const T* dy, const Geometry& g, std::int64_t c0, std::int64_t width,
              std::int64_t r0, std::int64_t r1, const T* mean, double* s_out, double* s_xc_out) {
  if (g.channels * static_cast<std::int64_t>(sizeof(T)) >= kWideRowBytes) {
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

#define BNORM_CL_ENTRY_POINTS(T, S)                                                               \
  void ClTileMoments##S(const T* x, const Geometry& g, std::int64_t c0, std::int64_t width,       \
                        std::int64_t first, std::int64_t last, std::int64_t leaf, Moments* acc) { \
    TileMomentsT(x, g, c0, width, first, last, leaf, acc);                                        \
  }                                                                                               \
  void ClRowSums##S(const T* x, const T* dy, const Geometry& g, std::int64_t c0,                  \
                    std::int64_t width, std::int64_t r0, std::int64_t r1, const T* mean,          \
                    double* s, double* s_xc) {                                                    \
    RowSumsT(x, dy, g, c0, width, r0, r1, mean, s, s_xc);                                         \
  }                                                                                               \
  void ClNormalizeRows##S(const T* x, T* y, const T* z, const Geometry& g, std::int64_t r0,       \
                          std::int64_t r1, const T* mean_hi, const T* mean_lo, const T* a,        \
                          const T* b, int mode, bool stream) {                                    \
    NormalizeRowsT(x, y, z, g, r0, r1, mean_hi, mean_lo, a, b, mode, stream);                     \
  }                                                                                               \
  void ClBackwardRows##S(const T* x, const T* dy, T* dx, const Geometry& g, std::int64_t r0,      \
                         std::int64_t r1, const T* mean, const T* k_dy, const T* k_xc,            \
                         const T* k_0, bool stream) {                                             \
    BackwardRowsT(x, dy, dx, g, r0, r1, mean, k_dy, k_xc, k_0, stream);                           \
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
  const int mode = e.z != nullptr ? 2 : (e.relu ? 1 : 0);
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
  // partials[group * C + c]
  const auto partials = scratch<Moments>(ScratchSlot::kPartials, groups * C);
  for_tasks(plan.blocks * groups, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t group = t % groups;
    const std::int64_t c0 = (t / groups) * plan.width;
    const std::int64_t width = std::min(plan.width, C - c0);
    const std::int64_t first = group * plan.rows.leaves_per_group;
    const std::int64_t last = std::min(plan.rows.leaves, first + plan.rows.leaves_per_group);
    Moments* acc = &partials[group * C + c0];
    if constexpr (std::is_same_v<T, float>) {
      HWY_DYNAMIC_DISPATCH(ClTileMomentsF)(x, g, c0, width, first, last, plan.rows.leaf, acc);
    } else {
      HWY_DYNAMIC_DISPATCH(ClTileMomentsD)(x, g, c0, width, first, last, plan.rows.leaf, acc);
    }
  });
  for (std::int64_t c = 0; c < C; ++c) {
    tree_merge(&partials[c], groups, C);
    moments[c] = partials[c];
  }
}

template <class T>
void channels_last_normalize(const T* x, T* y, const Geometry& g,
                             const NormalizeCoefficients<T>& k) {
  normalize_rows(x, y, g, k, Epilogue<T>{});
}

template <class T>
void channels_last_normalize_epilogue(const T* x, T* y, const Geometry& g,
                                      const NormalizeCoefficients<T>& k, const Epilogue<T>& e) {
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
  const std::int64_t width_per_task =
      C * static_cast<std::int64_t>(sizeof(T)) >= kWideRowBytes ? C : plan.width;
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
  for (std::int64_t c = 0; c < C; ++c) {
    tree_sum(&s[c], groups, C);
    tree_sum(&s_xc[c], groups, C);
    sum_dy[c] = s[c];
    sum_dy_xc[c] = s_xc[c];
  }
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

#define BNORM_INSTANTIATE(T)                                                                  \
  template void channels_last_moments<T>(const T*, const Geometry&, Moments*);                \
  template void channels_last_normalize<T>(const T*, T*, const Geometry&,                     \
                                           const NormalizeCoefficients<T>&);                  \
  template void channels_last_normalize_epilogue<T>(                                          \
      const T*, T*, const Geometry&, const NormalizeCoefficients<T>&, const Epilogue<T>&);    \
  template void channels_last_backward_sums<T>(const T*, const T*, const Geometry&, const T*, \
                                               double*, double*);                             \
  template void channels_last_backward_input<T>(const T*, const T*, T*, const Geometry&,      \
                                                const BackwardCoefficients<T>&);
BNORM_INSTANTIATE(float)
BNORM_INSTANTIATE(double)
#undef BNORM_INSTANTIATE

}  // namespace bnorm::kernels::simd
#endif  // HWY_ONCE
