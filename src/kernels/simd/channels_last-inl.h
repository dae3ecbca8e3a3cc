// Per-target loops of the channels-last SIMD kernels (inner == 1: (N,C), NHWC, NDHWC), included
// once per target by channels_last.cpp (Highway's skeleton: the loops here and in
// wide_rows-inl.h and strips-inl.h, the host side in the .cpp).
//
// x is a row-major matrix of `outer` rows by C channels, so every loop vectorizes along C, with
// per-channel coefficients loaded as vectors and a partial vector at the end of each row.
//   TileMomentsT    tiles of rows x a block of channels (chunking.hpp), merged left to right in
//                   a group: wide rows in one pass per tile (wide_rows-inl.h), narrow rows two
//                   passes per strip (strips-inl.h).
//   RowSumsT        sum dy and sum dy * (x - mean) over a group's rows, in double.
//   NormalizeRowsT  y = ((x - mean_hi) - mean_lo) * a + b row by row, then the epilogue.
//   BackwardRowsT   dx = k_dy * dy + k_xc * (x - mean) + k_0 row by row.
// Per-target include guard (Highway's idiom: toggles once per target).
#if defined(BNORM_KERNELS_SIMD_CHANNELS_LAST_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BNORM_KERNELS_SIMD_CHANNELS_LAST_INL_H_
#undef BNORM_KERNELS_SIMD_CHANNELS_LAST_INL_H_
#else
#define BNORM_KERNELS_SIMD_CHANNELS_LAST_INL_H_
#endif

#include <hwy/highway.h>

#include <cstdint>

#include "kernels/chunking.hpp"
#include "kernels/kernel.hpp"
#include "kernels/simd/simd-inl.h"
#include "kernels/simd/strips-inl.h"
#include "kernels/simd/tasks.hpp"
#include "kernels/simd/wide_rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {
// Internal linkage: the families define templates of the same names and signatures
// (NormalizeRowsT, BackwardRowsT) in their own translation units.
namespace {

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
              RowRange rows, const T* mean, double* s_out, double* s_xc_out) {
  if (wide_rows<T>(g)) {
    RowSumsWide(x, dy, g, c0, width, rows.begin, rows.end, mean, s_out, s_xc_out);
  } else {
    RowSumsStrips(x, dy, g, c0, width, rows.begin, rows.end, mean, s_out, s_xc_out);
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

// Rows [rows.begin, rows.end): y = BN(x), then + z (kAdd) and max(0, .) (kRelu). kStream:
// non-temporal stores (only when RowsStreamable: then a row has no tail).
template <bool kRelu, bool kAdd, bool kStream, class T>
HWY_INLINE void NormalizeRowsWith(const T* x, T* y, const T* z, const Geometry& g, RowRange rows,
                                  const T* HWY_RESTRICT mean_hi, const T* HWY_RESTRICT mean_lo,
                                  const T* HWY_RESTRICT a, const T* HWY_RESTRICT b) {
  const hn::ScalableTag<T> d;
  const size_t N = hn::Lanes(d);
  const auto C = static_cast<size_t>(g.channels);
  const auto zero = hn::Zero(d);
  for (std::int64_t r = rows.begin; r < rows.end; ++r) {
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

template <class T>
void NormalizeRowsT(const T* x, T* y, const Geometry& g, RowRange rows,
                    const NormalizeCoefficients<T>& k, const Epilogue<T>& e, bool stream) {
  WithStores(stream && RowsStreamable(y, g), [&](auto kStream) {
    constexpr bool kS = decltype(kStream)::value;
    switch (e.activation) {
      case Activation::kNone:
        NormalizeRowsWith<false, false, kS>(x, y, e.z, g, rows, k.mean_hi, k.mean_lo, k.a, k.b);
        break;
      case Activation::kRelu:
        NormalizeRowsWith<true, false, kS>(x, y, e.z, g, rows, k.mean_hi, k.mean_lo, k.a, k.b);
        break;
      case Activation::kAddRelu:
        NormalizeRowsWith<true, true, kS>(x, y, e.z, g, rows, k.mean_hi, k.mean_lo, k.a, k.b);
        break;
    }
  });
}

template <bool kStream, class T>
void BackwardRowsStream(const T* x, const T* dy, T* dx, const Geometry& g, RowRange rows,
                        const T* HWY_RESTRICT mean, const T* HWY_RESTRICT k_dy,
                        const T* HWY_RESTRICT k_xc, const T* HWY_RESTRICT k_0) {
  const hn::ScalableTag<T> d;
  const size_t N = hn::Lanes(d);
  const auto C = static_cast<size_t>(g.channels);
  for (std::int64_t r = rows.begin; r < rows.end; ++r) {
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
void BackwardRowsT(const T* x, const T* dy, T* dx, const Geometry& g, RowRange rows,
                   const BackwardCoefficients<T>& k, bool stream) {
  WithStores(stream && RowsStreamable(dx, g), [&](auto kStream) {
    BackwardRowsStream<decltype(kStream)::value>(x, dy, dx, g, rows, k.mean_w, k.k_dy_w, k.k_xc_w,
                                                 k.k_0_w);
  });
}

}  // namespace
}  // namespace bnorm::kernels::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
