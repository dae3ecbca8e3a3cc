// Per-target conversions between float lanes and 16-bit storage (bnorm::bf16, bnorm::fp16),
// bitwise the scalar conversions of include/bnorm/half.hpp on every target: widen on load,
// round to nearest even on store, one canonical quiet NaN.
//
// Highway 1.0.3's own conversions cannot be used as they are: its DemoteTo/ReorderDemote2To to
// bfloat16 truncate, its float16 narrowing truncates on SSE4 and below, and the
// F16C ones keep NaN payloads. So:
//   bf16 narrow  integer round-to-nearest-even on every target (add 0x7fff + kept LSB, shift);
//                the AVX512_BF16 instruction lives in native_x86.cpp (Highway has no target
//                that enables it)
//   bf16 widen   a 16-bit shift (exact on every target)
//   fp16         F16C (AVX2, AVX-512: vcvtps2ph with round to nearest even, vcvtph2ps) with the
//                NaN made canonical first; integer formulas on SSE4, SSSE3 and EMU128
// Included by foreach_target.h from convert.cpp (and, after the kernel refactor, from the kernel
// families, which call the *Lanes helpers inside their loops).

// Per-target include guard (Highway's idiom: toggles once per target).
#if defined(BNORM_KERNELS_SIMD_CONVERT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BNORM_KERNELS_SIMD_CONVERT_INL_H_
#undef BNORM_KERNELS_SIMD_CONVERT_INL_H_
#else
#define BNORM_KERNELS_SIMD_CONVERT_INL_H_
#endif

#include <hwy/highway.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "bnorm/half.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// 16-bit lanes, as many as DF has float lanes (half the vector width).
template <class DF>
using D16 = hn::Rebind<std::uint16_t, DF>;

// The bit patterns of the canonical quiet NaNs, and a float NaN that F16C turns into 0x7e00.
inline constexpr std::uint32_t kBf16CanonicalNaN = 0x7fc0;
inline constexpr std::uint32_t kFp16CanonicalNaN = 0x7e00;
inline constexpr std::uint32_t kFloatQuietNaN = 0x7fc00000;

// Lanes of 32-bit unsigned integers (each < 2^16) packed to 16-bit lanes.
template <class DF>
HWY_INLINE hn::Vec<D16<DF>> PackLow16(DF df, hn::Vec<hn::RebindToUnsigned<DF>> v) {
  const hn::RebindToSigned<DF> di;
  // DemoteTo(u16 <- i32) saturates at 0 and 0xffff: exact for values in [0, 2^16).
  (void)df;
  return hn::DemoteTo(D16<DF>(), hn::BitCast(di, v));
}

// ---- bfloat16 ----

template <class DF>
HWY_INLINE hn::Vec<DF> WidenBf16Lanes(DF df, hn::Vec<D16<DF>> h) {
  const hn::RebindToUnsigned<DF> du;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du, h)));
}

template <class DF>
HWY_INLINE hn::Vec<D16<DF>> NarrowBf16Lanes(DF df, hn::Vec<DF> v) {
  const hn::RebindToUnsigned<DF> du;
  const auto bits = hn::BitCast(du, v);
  const auto kept_lsb = hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1));
  auto h = hn::ShiftRight<16>(hn::Add(hn::Add(bits, hn::Set(du, 0x7fff)), kept_lsb));
  h = hn::IfThenElse(hn::RebindMask(du, hn::IsNaN(v)), hn::Set(du, kBf16CanonicalNaN), h);
  return PackLow16(df, h);
}

// ---- IEEE binary16 ----

template <class DF>
HWY_INLINE hn::Vec<DF> WidenFp16Lanes(DF df, hn::Vec<D16<DF>> h) {
#if HWY_TARGET >= HWY_SSE4 || defined(HWY_DISABLE_F16C)
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  const auto wide = hn::PromoteTo(du, h);
  const auto sign = hn::ShiftLeft<16>(hn::And(wide, hn::Set(du, 0x8000)));
  const auto magnitude = hn::And(wide, hn::Set(du, 0x7fff));
  const auto shifted = hn::ShiftLeft<13>(magnitude);
  // Normal: rebias the exponent (15 -> 127). Inf and NaN: exponent 255, NaNs made quiet.
  const auto normal = hn::Add(shifted, hn::Set(du, 0x38000000));
  const auto is_nan = hn::Gt(hn::BitCast(di, magnitude), hn::Set(di, 0x7c00));
  const auto special =
      hn::Or(hn::Add(shifted, hn::Set(du, 0x70000000)),
             hn::IfThenElseZero(hn::RebindMask(du, is_nan), hn::Set(du, 0x400000)));
  // Subnormal: magnitude * 2^-24, exact in float.
  const auto subnormal = hn::BitCast(
      du, hn::Mul(hn::ConvertTo(df, hn::BitCast(di, magnitude)), hn::Set(df, 0x1p-24f)));
  const auto is_special = hn::Gt(hn::BitCast(di, magnitude), hn::Set(di, 0x7bff));
  const auto is_subnormal = hn::Lt(hn::BitCast(di, magnitude), hn::Set(di, 0x400));
  auto bits = hn::IfThenElse(hn::RebindMask(du, is_special), special, normal);
  bits = hn::IfThenElse(hn::RebindMask(du, is_subnormal), subnormal, bits);
  return hn::BitCast(df, hn::Or(bits, sign));
#else
  // vcvtph2ps: exact, NaNs made quiet with sign and payload kept (as the scalar conversion).
  const hn::Rebind<hwy::float16_t, DF> df16;
  return hn::PromoteTo(df, hn::BitCast(df16, h));
#endif
}

template <class DF>
HWY_INLINE hn::Vec<D16<DF>> NarrowFp16Lanes(DF df, hn::Vec<DF> v) {
#if HWY_TARGET >= HWY_SSE4 || defined(HWY_DISABLE_F16C)
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  const auto bits = hn::BitCast(du, v);
  const auto sign = hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 0x8000));
  const auto magnitude = hn::And(bits, hn::Set(du, 0x7fffffff));
  // Normal results (|v| >= 2^-14): rebias and round the mantissa; a carry past 0x7bff is inf.
  const auto normal_lsb = hn::And(hn::ShiftRight<13>(magnitude), hn::Set(du, 1));
  auto normal =
      hn::ShiftRight<13>(hn::Add(hn::Sub(magnitude, hn::Set(du, 0x38000000 - 0xfff)), normal_lsb));
  normal = hn::Min(normal, hn::Set(du, 0x7c00));
  // Subnormal results (|v| < 2^-14): |v| * 2^24 is exact and below 2^10, and rounding it to an
  // integer, ties to even, gives the 16-bit pattern (1024 = 0x400 when it rounds up to the
  // smallest normal). Round is roundps with an immediate on SSE4; SSSE3 and SCALAR emulate it in
  // the default rounding mode, which bnorm never changes. Variable shifts, as in the scalar
  // formula, cost 5x more here (SSE4 emulates them).
  const auto subnormal = hn::BitCast(
      du, hn::ConvertTo(di, hn::Round(hn::Mul(hn::BitCast(df, magnitude), hn::Set(df, 0x1p24f)))));
  const auto is_subnormal = hn::Lt(hn::BitCast(di, magnitude), hn::Set(di, 0x38800000));
  auto h = hn::Or(hn::IfThenElse(hn::RebindMask(du, is_subnormal), subnormal, normal), sign);
  h = hn::IfThenElse(hn::RebindMask(du, hn::IsNaN(v)), hn::Set(du, kFp16CanonicalNaN), h);
  return PackLow16(df, h);
#else
  // vcvtps2ph rounds to nearest even (Highway passes the immediate 0) and keeps subnormals;
  // only its NaN keeps the payload, so NaNs become the float NaN it turns into 0x7e00.
  const hn::Rebind<hwy::float16_t, DF> df16;
  const hn::RebindToUnsigned<DF> du;
  const auto canonical = hn::BitCast(df, hn::Set(du, kFloatQuietNaN));
  return hn::BitCast(D16<DF>(), hn::DemoteTo(df16, hn::IfThenElse(hn::IsNaN(v), canonical, v)));
#endif
}

// ---- loads and stores of 16-bit storage ----

template <class T16>
HWY_INLINE const std::uint16_t* Bits(const T16* p) {
  return reinterpret_cast<const std::uint16_t*>(p);
}
template <class T16>
HWY_INLINE std::uint16_t* Bits(T16* p) {
  return reinterpret_cast<std::uint16_t*>(p);
}

// Lanes(df) values at p, widened to float.
template <class DF, class T16>
HWY_INLINE hn::Vec<DF> LoadWiden(DF df, const T16* HWY_RESTRICT p) {
  const auto h = hn::LoadU(D16<DF>(), Bits(p));
  if constexpr (std::is_same_v<T16, bf16>) {
    return WidenBf16Lanes(df, h);
  } else {
    return WidenFp16Lanes(df, h);
  }
}

// The first n (< Lanes(df)) values at p widened to float, zeros elsewhere; reads only p[0, n).
template <class DF, class T16>
HWY_INLINE hn::Vec<DF> LoadWidenTail(DF df, const T16* HWY_RESTRICT p, size_t n) {
  HWY_ALIGN std::uint16_t buffer[HWY_MAX_BYTES / sizeof(float)] = {};
  std::memcpy(buffer, p, n * sizeof(T16));
  const auto h = hn::Load(D16<DF>(), buffer);
  if constexpr (std::is_same_v<T16, bf16>) {
    return WidenBf16Lanes(df, h);
  } else {
    return WidenFp16Lanes(df, h);
  }
}

template <class DF, class T16>
HWY_INLINE hn::Vec<D16<DF>> Narrow(DF df, hn::Vec<DF> v) {
  if constexpr (std::is_same_v<T16, bf16>) {
    return NarrowBf16Lanes(df, v);
  } else {
    return NarrowFp16Lanes(df, v);
  }
}

// Rounds the Lanes(df) values of v to T16 and stores them at p.
template <class DF, class T16>
HWY_INLINE void NarrowStore(DF df, hn::Vec<DF> v, T16* HWY_RESTRICT p) {
  hn::StoreU(Narrow<DF, T16>(df, v), D16<DF>(), Bits(p));
}

// Rounds the first n (< Lanes(df)) lanes of v to T16 and stores them at p[0, n) only.
template <class DF, class T16>
HWY_INLINE void NarrowStoreTail(DF df, hn::Vec<DF> v, T16* HWY_RESTRICT p, size_t n) {
  HWY_ALIGN std::uint16_t buffer[HWY_MAX_BYTES / sizeof(float)];
  hn::Store(Narrow<DF, T16>(df, v), D16<DF>(), buffer);
  std::memcpy(p, buffer, n * sizeof(T16));
}

}  // namespace bnorm::kernels::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // BNORM_KERNELS_SIMD_CONVERT_INL_H_
