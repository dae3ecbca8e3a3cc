// Per-target building blocks of the SIMD kernels (Highway): loads that widen to double, partial
// loads and stores for tails, and the loops over one contiguous run of a channel. Included once
// per target by foreach_target.h through the families' .cpp and *-inl.h files and scales.cpp.
//
// Statistics are accumulated in double lanes: a float value is widened on load, so the sums have
// the accuracy of the double reference and the kernels stay memory bound (two double vectors per
// float vector of work is still far below what a core can add per byte read from memory).
// Elementwise passes run in the working type T with fused multiply-adds.

// Per-target include guard (Highway's idiom: toggles once per target).
#if defined(BNORM_KERNELS_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BNORM_KERNELS_SIMD_INL_H_
#undef BNORM_KERNELS_SIMD_INL_H_
#else
#define BNORM_KERNELS_SIMD_INL_H_
#endif

#include <hwy/cache_control.h>
#include <hwy/highway.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cache_line.hpp"
#include "kernels/chunking.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Double lanes for statistics; T lanes of the same count for loading what gets widened.
using DD = hn::ScalableTag<double>;
using VD = hn::Vec<DD>;
template <class T>
using DW = hn::Rebind<T, DD>;

// Loads the first n (< Lanes(d)) values at p, zeros elsewhere, never touching p[n...].
// Highway 1.0.3 has no LoadN, and its MaskedLoad reads the whole (aligned!) vector on SSE4 and
// EMU128, so only AVX2 and AVX-512 use the masked load; other targets copy the tail first.
template <class D, class T>
HWY_INLINE hn::Vec<D> LoadTail(D d, const T* HWY_RESTRICT p, size_t n) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  return hn::MaskedLoad(hn::FirstN(d, n), d, p);
#else
  HWY_ALIGN T buffer[HWY_MAX_BYTES / sizeof(T)] = {};
  std::memcpy(buffer, p, n * sizeof(T));
  return hn::Load(d, buffer);
#endif
}

// Stores the first n lanes of v at p (BlendedStore writes only the selected lanes on every target).
template <class D, class T>
HWY_INLINE void StoreTail(hn::Vec<D> v, D d, T* HWY_RESTRICT p, size_t n) {
  hn::BlendedStore(v, hn::FirstN(d, n), d, p);
}

// Lanes(DD) values at p widened to double.
template <class T>
HWY_INLINE VD LoadWide(const T* HWY_RESTRICT p) {
  const DD dd;
  if constexpr (std::is_same_v<T, double>) {
    return hn::LoadU(dd, p);
  } else {
    const DW<T> dw;
    return hn::PromoteTo(dd, hn::LoadU(dw, p));
  }
}

// The first n (< Lanes(DD)) values at p widened to double, zeros elsewhere.
template <class T>
HWY_INLINE VD LoadWideTail(const T* HWY_RESTRICT p, size_t n) {
  const DD dd;
  if constexpr (std::is_same_v<T, double>) {
    return LoadTail(dd, p, n);
  } else {
    const DW<T> dw;
    return hn::PromoteTo(dd, LoadTail(dw, p, n));
  }
}

HWY_INLINE double ReduceSum(VD v) {
  return hn::GetLane(hn::SumOfLanes(DD(), v));
}

// two_sum (chunking.hpp) in vectors: hi + lo == a + b exactly, lo = 0 where hi overflows.
HWY_INLINE void TwoSum(VD a, VD b, VD& hi, VD& lo) {
  hi = hn::Add(a, b);
  const VD bb = hn::Sub(hi, a);
  lo = hn::IfThenElseZero(hn::IsFinite(hi), hn::Add(hn::Sub(a, hn::Sub(hi, bb)), hn::Sub(b, bb)));
}

// merge_weighted (chunking.hpp) for whole vectors of channels, the same operations: a[k] merged
// with b[k] for k < width, in structure-of-arrays rows (every channel of a row has one count).
HWY_INLINE void MergeRows(const PartialRows& a, const double* HWY_RESTRICT b_mean,
                          const double* HWY_RESTRICT b_mean_lo, const double* HWY_RESTRICT b_m2,
                          size_t width, const MergeWeights& weights) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  const VD b_share = hn::Set(dd, weights.b_share);
  const VD product = hn::Set(dd, weights.product);
  size_t k = 0;
  for (; k + N <= width; k += N) {
    const VD a_mean = hn::LoadU(dd, a.mean + k);
    const VD a_mean_lo = hn::LoadU(dd, a.mean_lo + k);
    const VD delta = hn::Add(hn::Sub(hn::LoadU(dd, b_mean + k), a_mean),
                             hn::Sub(hn::LoadU(dd, b_mean_lo + k), a_mean_lo));
    VD mean, error;
    TwoSum(a_mean, hn::Mul(delta, b_share), mean, error);
    hn::StoreU(mean, dd, a.mean + k);
    hn::StoreU(hn::Add(a_mean_lo, error), dd, a.mean_lo + k);
    const VD m2 = hn::Add(hn::LoadU(dd, a.m2 + k), hn::LoadU(dd, b_m2 + k));
    hn::StoreU(hn::Add(m2, hn::Mul(hn::Mul(delta, delta), product)), dd, a.m2 + k);
  }
  // The rest in scalars: rows of partials lie C values apart, so a whole vector past width would
  // write into the next row.
  for (; k < width; ++k) {
    const Partial m = merge_weighted(Partial{0, a.mean[k], a.mean_lo[k], a.m2[k]},
                                     Partial{0, b_mean[k], b_mean_lo[k], b_m2[k]}, weights);
    a.mean[k] = m.mean;
    a.mean_lo[k] = m.mean_lo;
    a.m2[k] = m.m2;
  }
}

// Four independent accumulators hide the latency of the adds: of doubles (Sum4) or, for a
// float sum that only needs to be close (a leaf's first pass), of floats (Sum4F).
struct Sum4 {
  using D = DD;
  VD s0, s1, s2, s3;
  Sum4() : s0(hn::Zero(DD())), s1(s0), s2(s0), s3(s0) {}
  double total() const { return ReduceSum(hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))); }
};

struct Sum4F {
  using D = hn::ScalableTag<float>;
  hn::Vec<D> s0, s1, s2, s3;
  Sum4F() : s0(hn::Zero(D())), s1(s0), s2(s0), s3(s0) {}
  double total() const {
    return static_cast<double>(
        hn::GetLane(hn::SumOfLanes(D(), hn::Add(hn::Add(s0, s1), hn::Add(s2, s3)))));
  }
};

// How far ahead of the loads the first pass over a run prefetches. A channel's runs are short
// (one H*W plane) and far apart, so the hardware prefetchers, which stop at page boundaries,
// keep too little in flight for one core to reach DRAM bandwidth on its own.
inline constexpr size_t kPrefetchBytes = 2048;

// acc += p[0..n), in acc's lanes: Sum4 widens the values to double, Sum4F takes float values as
// they are (a quarter of the work).
template <class Acc, class T>
HWY_INLINE void AddRun(const T* HWY_RESTRICT p, size_t n, Acc& acc) {
  using D = typename Acc::D;
  const D d;
  const size_t N = hn::Lanes(d);
  const auto load = [&](size_t i) {
    if constexpr (std::is_same_v<hn::TFromD<D>, T>) {
      return hn::LoadU(d, p + i);
    } else {
      return LoadWide(p + i);
    }
  };
  constexpr size_t kAhead = kPrefetchBytes / sizeof(T);
  constexpr size_t kLine = kValuesPerLine<T>;
  size_t i = 0;
  for (; i + 4 * N + kAhead <= n; i += 4 * N) {
    for (size_t q = 0; q < 4 * N; q += kLine) hwy::Prefetch(p + i + kAhead + q);
    acc.s0 = hn::Add(acc.s0, load(i));
    acc.s1 = hn::Add(acc.s1, load(i + N));
    acc.s2 = hn::Add(acc.s2, load(i + 2 * N));
    acc.s3 = hn::Add(acc.s3, load(i + 3 * N));
  }
  for (; i + 4 * N <= n; i += 4 * N) {
    acc.s0 = hn::Add(acc.s0, load(i));
    acc.s1 = hn::Add(acc.s1, load(i + N));
    acc.s2 = hn::Add(acc.s2, load(i + 2 * N));
    acc.s3 = hn::Add(acc.s3, load(i + 3 * N));
  }
  for (; i + N <= n; i += N) acc.s0 = hn::Add(acc.s0, load(i));
  if (i < n) {
    if constexpr (std::is_same_v<hn::TFromD<D>, T>) {
      acc.s1 = hn::Add(acc.s1, LoadTail(d, p + i, n - i));
    } else {
      acc.s1 = hn::Add(acc.s1, LoadWideTail(p + i, n - i));
    }
  }
}

// r = p - mean: residual += r, square += r * r, over p[0..n) (in double).
template <class T>
HWY_INLINE void AddResidualRun(const T* HWY_RESTRICT p, size_t n, VD mean, Sum4& residual,
                               Sum4& square) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    const VD r0 = hn::Sub(LoadWide(p + i), mean);
    const VD r1 = hn::Sub(LoadWide(p + i + N), mean);
    residual.s0 = hn::Add(residual.s0, r0);
    residual.s1 = hn::Add(residual.s1, r1);
    square.s0 = hn::MulAdd(r0, r0, square.s0);
    square.s1 = hn::MulAdd(r1, r1, square.s1);
  }
  for (; i + N <= n; i += N) {
    const VD r = hn::Sub(LoadWide(p + i), mean);
    residual.s2 = hn::Add(residual.s2, r);
    square.s2 = hn::MulAdd(r, r, square.s2);
  }
  if (i < n) {
    const VD r =
        hn::IfThenElseZero(hn::FirstN(dd, n - i), hn::Sub(LoadWideTail(p + i, n - i), mean));
    residual.s3 = hn::Add(residual.s3, r);
    square.s3 = hn::MulAdd(r, r, square.s3);
  }
}

// s += dy, s_xc += dy * (x - mean) over a run of n values (in double).
template <class T>
HWY_INLINE void AddBackwardRun(const T* HWY_RESTRICT x, const T* HWY_RESTRICT dy, size_t n, VD mean,
                               Sum4& s, Sum4& s_xc) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    const VD d0 = LoadWide(dy + i);
    const VD d1 = LoadWide(dy + i + N);
    s.s0 = hn::Add(s.s0, d0);
    s.s1 = hn::Add(s.s1, d1);
    s_xc.s0 = hn::MulAdd(d0, hn::Sub(LoadWide(x + i), mean), s_xc.s0);
    s_xc.s1 = hn::MulAdd(d1, hn::Sub(LoadWide(x + i + N), mean), s_xc.s1);
  }
  for (; i + N <= n; i += N) {
    const VD d = LoadWide(dy + i);
    s.s2 = hn::Add(s.s2, d);
    s_xc.s2 = hn::MulAdd(d, hn::Sub(LoadWide(x + i), mean), s_xc.s2);
  }
  if (i < n) {
    // Zero dy lanes make the product zero whatever (0 - mean) is.
    const VD d = LoadWideTail(dy + i, n - i);
    s.s3 = hn::Add(s.s3, d);
    s_xc.s3 = hn::MulAdd(d, hn::Sub(LoadWideTail(x + i, n - i), mean), s_xc.s3);
  }
}

// The one switch between a pass with non-temporal stores and one without: f(std::true_type)
// and then a fence (streaming stores are weakly ordered) when `stream`, else f(std::false_type).
// f uses decltype(k)::value as its kStream template argument.
template <class F>
HWY_INLINE void WithStores(bool stream, F&& f) {
  if (stream) {
    f(std::true_type{});
    hwy::FlushStream();
  } else {
    f(std::false_type{});
  }
}

// Values to store normally at the start of a run at y before y is aligned to a whole vector,
// from where the rest can be streamed (non-temporal stores need aligned addresses); n when y is
// not even aligned to T (then nothing is streamed).
template <class D, class T>
HWY_INLINE size_t StreamHead(D d, const T* y, size_t n) {
  const size_t vector_bytes = hn::Lanes(d) * sizeof(T);
  const auto address = reinterpret_cast<std::uintptr_t>(y);
  if (address % sizeof(T) != 0) return n;
  const size_t head = ((vector_bytes - address % vector_bytes) % vector_bytes) / sizeof(T);
  return head < n ? head : n;
}

// Elementwise forward of one run with per-run (broadcast) coefficients:
//   y = ((x - mean_hi) - mean_lo) * a + b, then the epilogue: + z, relu.
// kStream writes y with non-temporal stores past its first aligned vector (see StreamOutput):
// the values are the same, only the way to memory differs.
template <bool kRelu, bool kAdd, bool kStream, class T>
HWY_INLINE void NormalizeRun(const T* HWY_RESTRICT x, T* y, const T* HWY_RESTRICT z, size_t n,
                             T mean_hi, T mean_lo, T a, T b) {
  const hn::ScalableTag<T> d;
  const size_t N = hn::Lanes(d);
  const auto vhi = hn::Set(d, mean_hi);
  const auto vlo = hn::Set(d, mean_lo);
  const auto va = hn::Set(d, a);
  const auto vb = hn::Set(d, b);
  const auto zero = hn::Zero(d);
  const auto apply = [&](auto v, const T* zp, size_t m) {
    auto out = hn::MulAdd(hn::Sub(hn::Sub(v, vhi), vlo), va, vb);
    if constexpr (kAdd) out = hn::Add(out, m == N ? hn::LoadU(d, zp) : LoadTail(d, zp, m));
    if constexpr (kRelu) out = hn::Max(out, zero);
    return out;
  };
  size_t i = 0;
  if constexpr (kStream) {
    const size_t head = StreamHead(d, y, n);
    if (head > 0) StoreTail(apply(LoadTail(d, x, head), z, head), d, y, head);
    i = head;
    for (; i + N <= n; i += N) hn::Stream(apply(hn::LoadU(d, x + i), z + i, N), d, y + i);
  }
  for (; i + N <= n; i += N) hn::StoreU(apply(hn::LoadU(d, x + i), z + i, N), d, y + i);
  if (i < n) StoreTail(apply(LoadTail(d, x + i, n - i), z + i, n - i), d, y + i, n - i);
}

// Elementwise backward of one run: dx = k_dy * dy + k_xc * (x - mean) + k_0. The product k_dy * dy
// is rounded before the addition (not fused): k_0 is -round(k_dy * mean(dy)), so a constant dy in
// a constant channel gives dx == 0 exactly, as the reference does. kStream as in NormalizeRun.
template <bool kStream, class T>
HWY_INLINE void BackwardRun(const T* HWY_RESTRICT x, const T* dy, T* dx, size_t n, T mean, T k_dy,
                            T k_xc, T k_0) {
  const hn::ScalableTag<T> d;
  const size_t N = hn::Lanes(d);
  const auto vm = hn::Set(d, mean);
  const auto vdy = hn::Set(d, k_dy);
  const auto vxc = hn::Set(d, k_xc);
  const auto v0 = hn::Set(d, k_0);
  const auto apply = [&](auto vx, auto vd) {
    return hn::Add(hn::Mul(vdy, vd), hn::MulAdd(vxc, hn::Sub(vx, vm), v0));
  };
  size_t i = 0;
  if constexpr (kStream) {
    const size_t head = StreamHead(d, dx, n);
    if (head > 0) StoreTail(apply(LoadTail(d, x, head), LoadTail(d, dy, head)), d, dx, head);
    i = head;
    for (; i + N <= n; i += N) {
      hn::Stream(apply(hn::LoadU(d, x + i), hn::LoadU(d, dy + i)), d, dx + i);
    }
  }
  for (; i + N <= n; i += N) {
    hn::StoreU(apply(hn::LoadU(d, x + i), hn::LoadU(d, dy + i)), d, dx + i);
  }
  if (i < n) {
    const size_t m = n - i;
    StoreTail(apply(LoadTail(d, x + i, m), LoadTail(d, dy + i, m)), d, dx + i, m);
  }
}

}  // namespace bnorm::kernels::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // BNORM_KERNELS_SIMD_INL_H_
