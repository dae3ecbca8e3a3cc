// 16-bit floating-point storage types: bnorm::bf16 (bfloat16) and bnorm::fp16 (IEEE binary16).
//
// They store values; arithmetic happens in float (mixed precision: 16-bit tensors, float32
// statistics and parameters). Each is a trivially copyable 2-byte struct holding the bit pattern,
// so a std::vector<bf16> or a span over a PyTorch / safetensors buffer is the tensor's memory.
//
// Conversions (docs/numerics.md, "16-bit storage"):
//   float -> 16-bit  round to nearest, ties to even; subnormal results are kept (never flushed);
//                    values beyond the largest finite 16-bit number round to +-inf; every NaN
//                    becomes one canonical quiet NaN (bf16 0x7fc0, fp16 0x7e00, sign dropped).
//                    Bitwise PyTorch's result for every non-NaN float.
//   16-bit -> float  exact. bf16 NaNs keep their bits (float = bits << 16, as PyTorch);
//                    fp16 NaNs keep sign and payload and become quiet (as PyTorch and F16C).
// The bulk conversions below use the fastest instructions the CPU has (AVX512_BF16, F16C,
// AVX-512, AVX2 ...) and are bitwise identical to the scalar ones on every CPU.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace bnorm {

namespace half_detail {

// float -> bfloat16 bits: add half an ulp of the result minus one, plus the kept LSB (ties to
// even), and truncate. Carries into the exponent are the correct rounding, up to +-inf.
constexpr std::uint16_t bf16_bits_from_float(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

constexpr float float_from_bf16_bits(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

// float -> binary16 bits. Normal results: rebias the exponent (127 -> 15) and round the 23-bit
// mantissa to 10 bits as above; a carry past 0x7bff gives 0x7c00 (inf). Subnormal results
// (|value| < 2^-14): the 24-bit significand shifted right by 126 - exponent, rounded the same way.
constexpr std::uint16_t fp16_bits_from_float(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return 0x7e00;  // NaN
  if (magnitude >= 0x38800000u) {              // 2^-14 and up: normal, or overflow to inf
    const std::uint32_t h = (magnitude - 0x38000000u + 0xfffu + ((magnitude >> 13) & 1u)) >> 13;
    return static_cast<std::uint16_t>(sign | (h < 0x7c00u ? h : 0x7c00u));
  }
  const std::uint32_t exponent = magnitude >> 23;
  if (exponent < 102) return sign;  // below 2^-25: rounds to zero
  const std::uint32_t significand = (magnitude & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126 - exponent;  // 14 ... 24
  const std::uint32_t h =
      (significand + (1u << (shift - 1)) - 1u + ((significand >> shift) & 1u)) >> shift;
  return static_cast<std::uint16_t>(sign | h);
}

constexpr float float_from_fp16_bits(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t magnitude = bits & 0x7fffu;
  if (magnitude >= 0x7c00u) {  // inf, or NaN made quiet
    const std::uint32_t quiet = magnitude > 0x7c00u ? 0x400000u : 0u;
    return std::bit_cast<float>(sign | 0x7f800000u | quiet | ((magnitude & 0x3ffu) << 13));
  }
  if (magnitude >= 0x400u) return std::bit_cast<float>(sign | ((magnitude << 13) + 0x38000000u));
  const float subnormal = static_cast<float>(magnitude) * 0x1p-24f;  // exact
  return sign != 0 ? -subnormal : subnormal;
}

}  // namespace half_detail

// bfloat16: 1 sign, 8 exponent, 7 mantissa bits (float's range, 3 significant digits).
struct bf16 {
  std::uint16_t bits;

  bf16() = default;
  // Rounds to nearest even (see above).
  constexpr explicit bf16(float value) : bits(half_detail::bf16_bits_from_float(value)) {}
  // Exact.
  constexpr explicit operator float() const { return half_detail::float_from_bf16_bits(bits); }
  static constexpr bf16 from_bits(std::uint16_t bits) {
    bf16 h{};
    h.bits = bits;
    return h;
  }
};

// IEEE 754 binary16: 1 sign, 5 exponent, 10 mantissa bits (largest finite 65504).
struct fp16 {
  std::uint16_t bits;

  fp16() = default;
  // Rounds to nearest even (see above).
  constexpr explicit fp16(float value) : bits(half_detail::fp16_bits_from_float(value)) {}
  // Exact.
  constexpr explicit operator float() const { return half_detail::float_from_fp16_bits(bits); }
  static constexpr fp16 from_bits(std::uint16_t bits) {
    fp16 h{};
    h.bits = bits;
    return h;
  }
};

static_assert(sizeof(bf16) == 2 && alignof(bf16) == 2);
static_assert(sizeof(fp16) == 2 && alignof(fp16) == 2);

// Bulk conversions, bitwise the scalar ones above, in SIMD.
// Requires: from.size() == to.size(); the spans do not overlap.
// Throws:   bnorm::Error naming the sizes otherwise.
void convert(std::span<const float> from, std::span<bf16> to);
void convert(std::span<const float> from, std::span<fp16> to);
void convert(std::span<const bf16> from, std::span<float> to);
void convert(std::span<const fp16> from, std::span<float> to);

}  // namespace bnorm
