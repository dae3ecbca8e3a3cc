// The highway conversion path: convert-inl.h over whole arrays, compiled for every Highway
// target and dispatched at run time; the choice of the fastest path per conversion.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/simd/convert.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Highway must come after foreach_target.h.
#include <hwy/highway.h>

#include "kernels/simd/convert-inl.h"
#include "kernels/simd/convert.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {
namespace {

template <class T16>
void WidenArray(const T16* HWY_RESTRICT from, float* HWY_RESTRICT to, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  // Two vectors a step: the conversions of one overlap the loads and stores of the other.
  for (; i + 2 * N <= n; i += 2 * N) {
    const auto a = LoadWiden(df, from + i);
    const auto b = LoadWiden(df, from + i + N);
    hn::StoreU(a, df, to + i);
    hn::StoreU(b, df, to + i + N);
  }
  for (; i + N <= n; i += N) hn::StoreU(LoadWiden(df, from + i), df, to + i);
  if (i < n) {
    HWY_ALIGN float buffer[HWY_MAX_BYTES / sizeof(float)];
    hn::Store(LoadWidenTail(df, from + i, n - i), df, buffer);
    std::memcpy(to + i, buffer, (n - i) * sizeof(float));
  }
}

template <class T16>
void NarrowArray(const float* HWY_RESTRICT from, T16* HWY_RESTRICT to, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    const auto a = hn::LoadU(df, from + i);
    const auto b = hn::LoadU(df, from + i + N);
    NarrowStore(df, a, to + i);
    NarrowStore(df, b, to + i + N);
  }
  for (; i + N <= n; i += N) NarrowStore(df, hn::LoadU(df, from + i), to + i);
  if (i < n) {
    HWY_ALIGN float buffer[HWY_MAX_BYTES / sizeof(float)] = {};
    std::memcpy(buffer, from + i, (n - i) * sizeof(float));
    NarrowStoreTail(df, hn::Load(df, buffer), to + i, n - i);
  }
}

}  // namespace

void WidenBf16(const bf16* from, float* to, size_t n) {
  WidenArray(from, to, n);
}
void WidenFp16(const fp16* from, float* to, size_t n) {
  WidenArray(from, to, n);
}
void NarrowBf16(const float* from, bf16* to, size_t n) {
  NarrowArray(from, to, n);
}
void NarrowFp16(const float* from, fp16* to, size_t n) {
  NarrowArray(from, to, n);
}

}  // namespace bnorm::kernels::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bnorm::kernels::simd {

HWY_EXPORT(WidenBf16);
HWY_EXPORT(WidenFp16);
HWY_EXPORT(NarrowBf16);
HWY_EXPORT(NarrowFp16);

namespace {
void highway_widen_bf16(const bf16* from, float* to, std::size_t n) {
  HWY_DYNAMIC_DISPATCH(WidenBf16)(from, to, n);
}
void highway_widen_fp16(const fp16* from, float* to, std::size_t n) {
  HWY_DYNAMIC_DISPATCH(WidenFp16)(from, to, n);
}
void highway_narrow_bf16(const float* from, bf16* to, std::size_t n) {
  HWY_DYNAMIC_DISPATCH(NarrowBf16)(from, to, n);
}
void highway_narrow_fp16(const float* from, fp16* to, std::size_t n) {
  HWY_DYNAMIC_DISPATCH(NarrowFp16)(from, to, n);
}
}  // namespace

ConvertPath highway_convert() {
  return {"highway", highway_widen_bf16, highway_narrow_bf16, highway_widen_fp16,
          highway_narrow_fp16};
}

std::vector<ConvertPath> convert_paths() {
  std::vector<ConvertPath> paths{highway_convert()};
  if (cpu_has_avx512_bf16()) paths.push_back(avx512_bf16_convert());
  return paths;
}

void widen(const bf16* from, float* to, std::size_t n) {
  highway_widen_bf16(from, to, n);
}
void widen(const fp16* from, float* to, std::size_t n) {
  highway_widen_fp16(from, to, n);
}
void narrow(const float* from, fp16* to, std::size_t n) {
  highway_narrow_fp16(from, to, n);
}
void narrow(const float* from, bf16* to, std::size_t n) {
  static const auto best =
      cpu_has_avx512_bf16() ? avx512_bf16_convert().narrow_bf16 : highway_narrow_bf16;
  best(from, to, n);
}

}  // namespace bnorm::kernels::simd
#endif  // HWY_ONCE
