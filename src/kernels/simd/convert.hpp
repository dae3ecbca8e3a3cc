// Bulk conversions between float and 16-bit storage (bnorm::bf16, bnorm::fp16), every
// implementation bitwise the scalar conversions of include/bnorm/half.hpp. No Highway here.
//
//   highway      convert.cpp: convert-inl.h on the Highway target dispatch picks (force_target
//                restricts it): integer round-to-nearest-even for bf16 everywhere, F16C for fp16
//                on AVX2 / AVX-512, integer formulas for fp16 on SSE4, SSSE3 and EMU128
//   avx512_bf16  native_x86.cpp: vcvtneps2bf16 through intrinsics with a target attribute,
//                used when CPUID reports AVX512_BF16 (bf16 narrowing only; widening is a shift)
// AVX512_FP16 adds nothing for storage conversions: its vcvtps2phx rounds as the AVX-512F
// vcvtps2ph that the highway path already runs, at the same width.
#pragma once

#include <cstddef>
#include <vector>

#include "bnorm/half.hpp"

namespace bnorm::kernels::simd {

// One implementation; a function is nullptr where it has none of its own for that conversion.
struct ConvertPath {
  const char* name;
  void (*widen_bf16)(const bf16* from, float* to, std::size_t n);
  void (*narrow_bf16)(const float* from, bf16* to, std::size_t n);
  void (*widen_fp16)(const fp16* from, float* to, std::size_t n);
  void (*narrow_fp16)(const float* from, fp16* to, std::size_t n);
};

// The Highway path, dispatched to the best (or the forced) target at each call.
ConvertPath highway_convert();
// Whether this CPU (and OS) runs AVX512_BF16 instructions.
bool cpu_has_avx512_bf16();
// The avx512_bf16 path; its functions are nullptr on other CPUs or compilers.
ConvertPath avx512_bf16_convert();
// Every path this CPU runs, the highway one first (for tests and benchmarks).
std::vector<ConvertPath> convert_paths();

// The fastest path for each conversion on this CPU (what bnorm::convert and the kernels use).
void widen(const bf16* from, float* to, std::size_t n);
void widen(const fp16* from, float* to, std::size_t n);
void narrow(const float* from, bf16* to, std::size_t n);
void narrow(const float* from, fp16* to, std::size_t n);

}  // namespace bnorm::kernels::simd
