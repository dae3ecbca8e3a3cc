// The avx512_bf16 conversion path: vcvtne2ps2bf16 (AVX512_BF16) through intrinsics with a target
// attribute, behind a CPUID check. Debian's Highway 1.0.3 has no target that enables AVX512_BF16.
//
// The instruction rounds to nearest even but is not bitwise the scalar conversion on two kinds
// of input (measured on AMD Zen 5, as Intel's manual describes): float subnormals are read as
// zero (0x007fffff gives 0x0000, not 0x0080) and NaNs keep their payload (0xffc12345 gives
// 0xffc1, not 0x7fc0). A step of 32 floats with any such value takes the integer formula of
// convert-inl.h instead (one vfpclassps per vector decides; real data almost never has them).
#include <cstring>

#include "kernels/simd/convert.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BNORM_HAVE_AVX512_BF16_PATH 1
#include <cpuid.h>
#include <immintrin.h>

#endif

namespace bnorm::kernels::simd {

#if BNORM_HAVE_AVX512_BF16_PATH
// g++ 12's AVX-512 intrinsics start from _mm512_undefined_epi32(), which -Wmaybe-uninitialized
// reports at every use.
#pragma GCC diagnostic push
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
namespace {

#define BNORM_TARGET_AVX512_BF16 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

// Lanes that vcvtneps2bf16 does not convert as the scalar conversion: NaN (quiet 0x01 or
// signalling 0x80) or subnormal (0x20), in one vfpclassps.
BNORM_TARGET_AVX512_BF16 inline __mmask16 Unusual(__m512 v) {
  return _mm512_fpclass_ps_mask(v, 0x01 | 0x20 | 0x80);
}

// The integer round-to-nearest-even of convert-inl.h, 16 lanes.
BNORM_TARGET_AVX512_BF16 inline __m256i NarrowExactly(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i kept_lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i h = _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7fff)), kept_lsb);
  h = _mm512_srli_epi32(h, 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  h = _mm512_mask_blend_epi32(nan, h, _mm512_set1_epi32(0x7fc0));
  return _mm512_cvtepi32_epi16(h);
}

BNORM_TARGET_AVX512_BF16 inline __m256i Narrow16(__m512 v) {
  if (Unusual(v) != 0) return NarrowExactly(v);
  return (__m256i)_mm512_cvtneps_pbh(v);
}

BNORM_TARGET_AVX512_BF16 void NarrowBf16Avx512(const float* from, bf16* to, std::size_t n) {
  auto* out = reinterpret_cast<std::uint16_t*>(to);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 lo = _mm512_loadu_ps(from + i);
    const __m512 hi = _mm512_loadu_ps(from + i + 16);
    if ((Unusual(lo) | Unusual(hi)) == 0) {
      // One instruction for 32 values: the low half of the result comes from the second operand.
      _mm512_storeu_si512(out + i, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), NarrowExactly(lo));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i + 16), NarrowExactly(hi));
    }
  }
  for (; i < n; i += 16) {
    const std::size_t count = n - i < 16 ? n - i : 16;
    const __mmask16 lanes = static_cast<__mmask16>((1u << count) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(lanes, from + i);
    _mm256_mask_storeu_epi16(out + i, lanes, Narrow16(v));
  }
}

}  // namespace
#pragma GCC diagnostic pop

bool cpu_has_avx512_bf16() {
  // Checked directly rather than through Highway's target bits, which tests may restrict
  // (force_target): the instructions (CPUID) and the OS saving the ZMM and mask registers (XCR0).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0 || (ecx & (1u << 27)) == 0) return false;
  unsigned xcr0_low = 0, xcr0_high = 0;
  __asm__("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
  constexpr unsigned kSseAvxOpmaskZmm = 0xe6;  // XCR0 bits 1, 2, 5, 6, 7
  if ((xcr0_low & kSseAvxOpmaskZmm) != kSseAvxOpmaskZmm) return false;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  constexpr unsigned kAvx512FDqBwVl = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);
  if ((ebx & kAvx512FDqBwVl) != kAvx512FDqBwVl) return false;
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (eax & (1u << 5)) != 0;  // AVX512_BF16
}

ConvertPath avx512_bf16_convert() {
  if (!cpu_has_avx512_bf16()) return {"avx512_bf16", nullptr, nullptr, nullptr, nullptr};
  return {"avx512_bf16", nullptr, NarrowBf16Avx512, nullptr, nullptr};
}

#else

bool cpu_has_avx512_bf16() {
  return false;
}
ConvertPath avx512_bf16_convert() {
  return {"avx512_bf16", nullptr, nullptr, nullptr, nullptr};
}

#endif

}  // namespace bnorm::kernels::simd
