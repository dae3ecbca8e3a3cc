// bnorm::bf16 and bnorm::fp16 (include/bnorm/half.hpp): the scalar conversions against
//   - PyTorch's conversions of every one of the 2^32 float bit patterns and of every 16-bit
//     pattern, through the hashes in tests/golden/half/conversions.txt (make_half_fixture.py),
//     and its results for ~12,000 floats next to every rounding decision, read one by one;
//   - an independent formulation in double arithmetic (scale to the format's quantum, nearbyint,
//     scale back) for the boundary floats and a strided sweep of all floats;
//   - the exact value formula (ldexp) for every 16-bit pattern.
#include "bnorm/half.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "bnorm/error.hpp"
#include "support/half_fixture.hpp"

namespace bnorm {
namespace {

using test::HalfFixture;
using test::load_half_fixture;
using test::mix64;
using test::Runs;

static_assert(std::is_trivially_copyable_v<bf16> && std::is_trivially_copyable_v<fp16>);
static_assert(std::is_trivially_default_constructible_v<bf16>);
static_assert(std::is_standard_layout_v<bf16> && std::is_standard_layout_v<fp16>);
static_assert(sizeof(bf16[3]) == 6 && sizeof(fp16[3]) == 6);
// constexpr: the conversions work at compile time.
static_assert(bf16(1.0f).bits == 0x3f80 && fp16(1.0f).bits == 0x3c00);
static_assert(static_cast<float>(fp16::from_bits(0x7bff)) == 65504.0f);

// A binary floating-point format: p significant bits (with the implicit one), exponent bias,
// smallest normal exponent.
struct Format {
  int precision;
  int bias;
  int exponent_bits;
  std::uint16_t canonical_nan;
  [[nodiscard]] int min_exponent() const { return 1 - bias; }
  [[nodiscard]] double max_finite() const {
    const int max_exponent = (1 << exponent_bits) - 2 - bias;
    return std::ldexp(2.0 - std::ldexp(1.0, 1 - precision), max_exponent);
  }
};
constexpr Format kBf16{8, 127, 8, 0x7fc0};
constexpr Format kFp16{11, 15, 5, 0x7e00};

// The value of a 16-bit pattern (non-NaN), by the textbook formula.
double value_of(std::uint16_t bits, const Format& f) {
  const int mantissa_bits = f.precision - 1;
  const int exponent = (bits >> mantissa_bits) & ((1 << f.exponent_bits) - 1);
  const int mantissa = bits & ((1 << mantissa_bits) - 1);
  const double sign = (bits & 0x8000) != 0 ? -1.0 : 1.0;
  if (exponent == (1 << f.exponent_bits) - 1) return sign * HUGE_VAL;
  if (exponent == 0) return sign * std::ldexp(mantissa, f.min_exponent() - mantissa_bits);
  return sign * std::ldexp(mantissa + (1 << mantissa_bits), exponent - f.bias - mantissa_bits);
}

// The nearest value of the format to x, ties to even, in double arithmetic (independent of the
// bit manipulations under test), encoded as 16 bits.
std::uint16_t reference_narrow(float x, const Format& f) {
  if (std::isnan(x)) return f.canonical_nan;
  const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const int mantissa_bits = f.precision - 1;
  const auto infinity = static_cast<std::uint16_t>(((1 << f.exponent_bits) - 1) << mantissa_bits);
  const double a = std::abs(static_cast<double>(x));
  if (std::isinf(a)) return sign | infinity;
  if (a == 0) return sign;
  int e = 0;
  (void)std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1): floor(log2 a) = e - 1
  const int quantum = std::max(e - 1, f.min_exponent()) - mantissa_bits;
  const double rounded = std::ldexp(std::nearbyint(std::ldexp(a, -quantum)), quantum);
  if (rounded > f.max_finite()) return sign | infinity;
  if (rounded < std::ldexp(1.0, f.min_exponent())) {  // subnormal or zero
    return sign | static_cast<std::uint16_t>(std::ldexp(rounded, mantissa_bits - f.min_exponent()));
  }
  (void)std::frexp(rounded, &e);
  const int exponent_field = e - 1 + f.bias;
  const auto mantissa =
      static_cast<int>(std::ldexp(rounded, mantissa_bits - (e - 1))) - (1 << mantissa_bits);
  return sign | static_cast<std::uint16_t>((exponent_field << mantissa_bits) | mantissa);
}

std::uint16_t narrow_bits(float x, const Format& f) {
  return &f == &kBf16 ? bf16(x).bits : fp16(x).bits;
}
float widen(std::uint16_t bits, const Format& f) {
  return &f == &kBf16 ? static_cast<float>(bf16::from_bits(bits))
                      : static_cast<float>(fp16::from_bits(bits));
}

const HalfFixture& fixture() {
  static const HalfFixture f = load_half_fixture();
  return f;
}

TEST(HalfFixture, IsComplete) {
  const HalfFixture& f = fixture();
  EXPECT_EQ(f.format, "1");
  EXPECT_GT(f.samples.size(), 10000u);
  // Every non-NaN 16-bit value is the result of some float, once per sign half: at least
  // 2 x (number of values) runs, plus the NaN runs.
  EXPECT_GT(f.narrow_bf16.count, 65000u);
  EXPECT_GT(f.narrow_fp16.count, 63000u);
}

// Every 16-bit pattern widens to its exact value; NaNs as documented (bf16: the bits shifted;
// fp16: sign and payload kept, made quiet).
void check_widen_every_pattern(const Format& f) {
  int failures = 0;
  for (std::uint32_t h = 0; h < 65536 && failures < 5; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float got = widen(bits, f);
    const std::uint32_t got_bits = std::bit_cast<std::uint32_t>(got);
    const int mantissa_bits = f.precision - 1;
    const bool is_nan = ((bits & 0x7fff) >> mantissa_bits) == (1 << f.exponent_bits) - 1 &&
                        (bits & ((1 << mantissa_bits) - 1)) != 0;
    std::uint32_t want_bits = 0;
    if (!is_nan) {
      want_bits = std::bit_cast<std::uint32_t>(static_cast<float>(value_of(bits, f)));
      EXPECT_EQ(static_cast<double>(got), value_of(bits, f));
    } else if (&f == &kBf16) {
      want_bits = h << 16;
    } else {
      want_bits = ((h & 0x8000u) << 16) | 0x7fc00000u | ((h & 0x3ffu) << 13);
    }
    if (got_bits != want_bits) {
      ADD_FAILURE() << std::hex << "widen(0x" << h << ") = 0x" << got_bits << ", expected 0x"
                    << want_bits;
      ++failures;
    }
  }
}

TEST(Half, WidenIsExactOnEveryBf16Pattern) {
  check_widen_every_pattern(kBf16);
}
TEST(Half, WidenIsExactOnEveryFp16Pattern) {
  check_widen_every_pattern(kFp16);
}

std::uint64_t widen_hash(const Format& f) {
  std::uint64_t sum = 0;
  for (std::uint64_t h = 0; h < 65536; ++h) {
    const float x = widen(static_cast<std::uint16_t>(h), f);
    sum += mix64((h << 32) | std::bit_cast<std::uint32_t>(x));
  }
  return sum;
}

TEST(Half, WidenIsBitwisePyTorchOnEveryPattern) {
  EXPECT_EQ(widen_hash(kBf16), fixture().widen_hash_bf16);
  EXPECT_EQ(widen_hash(kFp16), fixture().widen_hash_fp16);
}

// PyTorch's results for the boundary-class floats, one by one (readable failures).
TEST(Half, NarrowMatchesPyTorchOnBoundaryFloats) {
  int failures = 0;
  for (const auto& s : fixture().samples) {
    const float x = std::bit_cast<float>(s.input);
    if (bf16(x).bits != s.bf16 || fp16(x).bits != s.fp16) {
      ADD_FAILURE() << std::hex << "float 0x" << s.input << ": bf16 0x" << bf16(x).bits
                    << " (PyTorch 0x" << s.bf16 << "), fp16 0x" << fp16(x).bits << " (PyTorch 0x"
                    << s.fp16 << ")";
      if (++failures == 10) return;
    }
  }
}

// The independent double formulation agrees on the boundary floats and on a strided sweep of
// every float (a stride coprime with 2 visits every residue of the low bits).
TEST(Half, NarrowMatchesIndependentFormulation) {
  std::vector<std::uint32_t> inputs;
  for (const auto& s : fixture().samples) inputs.push_back(s.input);
  constexpr std::uint64_t kStride = 1021;  // prime: 4.2 million floats, every low-bit pattern
  for (std::uint64_t i = 0; i < (std::uint64_t{1} << 32); i += kStride) {
    inputs.push_back(static_cast<std::uint32_t>(i));
  }
  for (const Format* f : {&kBf16, &kFp16}) {
    int failures = 0;
    for (const std::uint32_t input : inputs) {
      const float x = std::bit_cast<float>(input);
      const std::uint16_t got = narrow_bits(x, *f);
      const std::uint16_t want = reference_narrow(x, *f);
      if (got != want) {
        ADD_FAILURE() << std::hex << (f == &kBf16 ? "bf16" : "fp16") << "(0x" << input << ") = 0x"
                      << got << ", expected 0x" << want;
        if (++failures == 10) break;
      }
    }
  }
}

// All 2^32 floats, as runs of equal results, against PyTorch's: bitwise PyTorch on every
// non-NaN float, the canonical NaN on every NaN.
TEST(Half, NarrowIsBitwisePyTorchOnEveryFloat) {
  if (test::kSanitized) GTEST_SKIP() << "all 2^32 floats: in the release build only";
  const auto bf16_runs =
      test::runs_of_every_float([](std::uint64_t first, std::size_t n, std::uint16_t* out) {
        for (std::size_t k = 0; k < n; ++k) {
          out[k] = bf16(std::bit_cast<float>(static_cast<std::uint32_t>(first + k))).bits;
        }
      });
  EXPECT_EQ(bf16_runs, fixture().narrow_bf16);
  const auto fp16_runs =
      test::runs_of_every_float([](std::uint64_t first, std::size_t n, std::uint16_t* out) {
        for (std::size_t k = 0; k < n; ++k) {
          out[k] = fp16(std::bit_cast<float>(static_cast<std::uint32_t>(first + k))).bits;
        }
      });
  EXPECT_EQ(fp16_runs, fixture().narrow_fp16);
}

TEST(Half, RoundTripKeepsEveryNonNaNPattern) {
  for (const Format* f : {&kBf16, &kFp16}) {
    for (std::uint32_t h = 0; h < 65536; ++h) {
      const auto bits = static_cast<std::uint16_t>(h);
      const float x = widen(bits, *f);
      if (std::isnan(x)) {
        EXPECT_EQ(narrow_bits(x, *f), f->canonical_nan);
      } else {
        ASSERT_EQ(narrow_bits(x, *f), bits) << std::hex << "0x" << h;
      }
    }
  }
}

TEST(Half, KnownValues) {
  // Ties to even, subnormals kept, overflow to inf, one canonical quiet NaN.
  EXPECT_EQ(bf16(std::bit_cast<float>(0x3f808000u)).bits, 0x3f80);  // tie, even below
  EXPECT_EQ(bf16(std::bit_cast<float>(0x3f818000u)).bits, 0x3f82);  // tie, even above
  EXPECT_EQ(bf16(std::bit_cast<float>(0x007fffffu)).bits, 0x0080);  // subnormal rounds up
  EXPECT_EQ(bf16(std::bit_cast<float>(0x00010000u)).bits, 0x0001);  // smallest subnormal
  EXPECT_EQ(bf16(std::numeric_limits<float>::max()).bits, 0x7f80);
  EXPECT_EQ(bf16(-std::numeric_limits<float>::quiet_NaN()).bits, 0x7fc0);
  EXPECT_EQ(bf16(std::bit_cast<float>(0xff800001u)).bits, 0x7fc0);  // signalling
  EXPECT_EQ(fp16(65504.0f).bits, 0x7bff);
  EXPECT_EQ(fp16(65519.99f).bits, 0x7bff);
  EXPECT_EQ(fp16(65520.0f).bits, 0x7c00);  // the tie above the largest finite value
  EXPECT_EQ(fp16(0x1p-24f).bits, 0x0001);
  EXPECT_EQ(fp16(0x1p-25f).bits, 0x0000);    // tie, even below
  EXPECT_EQ(fp16(0x1.8p-24f).bits, 0x0002);  // tie, even above
  EXPECT_EQ(fp16(-0x1p-26f).bits, 0x8000);
  EXPECT_EQ(fp16(std::bit_cast<float>(0xffc12345u)).bits, 0x7e00);
  EXPECT_EQ(std::bit_cast<std::uint32_t>(static_cast<float>(fp16::from_bits(0x7c01))), 0x7fc02000u);
}

TEST(Half, BulkConvertChecksSizesAndOverlap) {
  std::vector<float> f(8, 1.0f);
  std::vector<bf16> b(7);
  EXPECT_THROW(convert(std::span<const float>(f), std::span<bf16>(b)), Error);
  std::vector<float> buffer(8);
  auto* alias = reinterpret_cast<fp16*>(buffer.data() + 2);
  EXPECT_THROW(convert(std::span<const fp16>(alias, 8), std::span<float>(buffer)), Error);
  try {
    convert(std::span<const float>(f), std::span<bf16>(b));
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected equal sizes"), std::string::npos);
  }
}

}  // namespace
}  // namespace bnorm
