// The SIMD conversions between float and 16-bit storage (src/kernels/simd/convert.hpp), on every
// Highway target this CPU runs and on the native avx512_bf16 path where the CPU has it: bitwise
// the scalar conversions of bnorm/half.hpp (half_test.cpp proves those against PyTorch) on
//   - every 16-bit pattern (widening),
//   - PyTorch's boundary-class floats and a strided sweep of all floats (narrowing), and on all
//     2^32 floats against PyTorch's hash for the paths dispatch picks on this CPU,
//   - every length 0 ... 80 at every offset within a vector, with guards around the output
//     (tails read and write nothing outside [0, n)).
#include <gtest/gtest.h>
#include <omp.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "bnorm/half.hpp"
#include "kernels/simd/convert.hpp"
#include "kernels/simd/simd.hpp"
#include "support/half_fixture.hpp"

namespace bnorm {
namespace {

using kernels::simd::ConvertPath;
using kernels::simd::force_target;
using kernels::simd::supported_targets;

const test::HalfFixture& fixture() {
  static const test::HalfFixture f = test::load_half_fixture();
  return f;
}

// Boundary floats, the 16-bit patterns widened (every float a 16-bit value can be, and its
// neighbours), and a strided sweep of all floats (a prime stride visits every low-bit residue).
const std::vector<float>& narrow_inputs() {
  static const std::vector<float> inputs = [] {
    std::vector<float> v;
    for (const auto& s : fixture().samples) v.push_back(std::bit_cast<float>(s.input));
    for (std::uint32_t h = 0; h < 65536; ++h) {
      const std::uint32_t b = h << 16;
      for (const std::uint32_t d : {0u, 1u, 0x7fffu, 0x8000u, 0x8001u, 0xfffu, 0x1000u, 0x1001u}) {
        v.push_back(std::bit_cast<float>(b | d));
      }
    }
    for (std::uint64_t i = 0; i < (std::uint64_t{1} << 32); i += 4093) {
      v.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(i)));
    }
    return v;
  }();
  return inputs;
}

template <class T16>
std::uint16_t scalar_bits(float x) {
  return T16(x).bits;
}

template <class T16>
void check_narrow(void (*narrow)(const float*, T16*, std::size_t), const std::string& label) {
  const std::vector<float>& in = narrow_inputs();
  std::vector<T16> out(in.size());
  narrow(in.data(), out.data(), in.size());
  int failures = 0;
  for (std::size_t i = 0; i < in.size() && failures < 10; ++i) {
    const std::uint16_t want = scalar_bits<T16>(in[i]);
    if (out[i].bits != want) {
      ADD_FAILURE() << label << std::hex << ": float 0x" << std::bit_cast<std::uint32_t>(in[i])
                    << " -> 0x" << out[i].bits << ", scalar 0x" << want;
      ++failures;
    }
  }
}

template <class T16>
void check_widen(void (*widen)(const T16*, float*, std::size_t), const std::string& label) {
  std::vector<T16> in(65536);
  for (std::uint32_t h = 0; h < 65536; ++h) in[h] = T16::from_bits(static_cast<std::uint16_t>(h));
  std::vector<float> out(in.size());
  widen(in.data(), out.data(), in.size());
  int failures = 0;
  for (std::uint32_t h = 0; h < 65536 && failures < 10; ++h) {
    const auto got = std::bit_cast<std::uint32_t>(out[h]);
    const auto want = std::bit_cast<std::uint32_t>(static_cast<float>(in[h]));
    if (got != want) {
      ADD_FAILURE() << label << std::hex << ": 0x" << h << " -> 0x" << got << ", scalar 0x" << want;
      ++failures;
    }
  }
}

// Every length up to 80 at offsets 0 ... 16 (unaligned starts, every tail): outputs equal the
// scalar ones and the guards around them are untouched.
template <class From, class To, class F>
void check_tails(F convert, const std::string& label) {
  constexpr std::size_t kGuard = 64;
  constexpr std::uint16_t kJunk = 0x5a5a;
  for (std::size_t offset = 0; offset <= 16; ++offset) {
    for (std::size_t n = 0; n <= 80; ++n) {
      std::vector<From> in(offset + n);
      for (std::size_t i = 0; i < in.size(); ++i) {
        // Values with rounding work to do: odd multiples of small powers of two, and a NaN.
        const auto bits = static_cast<std::uint32_t>(0x3f800000u + i * 0x12345u);
        if constexpr (std::is_same_v<From, float>) {
          in[i] = i == 7 ? std::bit_cast<float>(0xff812345u) : std::bit_cast<float>(bits);
        } else {
          in[i] = From::from_bits(static_cast<std::uint16_t>(bits >> 12));
        }
      }
      std::vector<To> out(offset + n + kGuard);
      std::memset(out.data(), 0x5a, out.size() * sizeof(To));
      convert(in.data() + offset, out.data() + offset, n);
      for (std::size_t i = 0; i < out.size(); ++i) {
        std::uint32_t got = 0;
        std::memcpy(&got, &out[i], sizeof(To) < 4 ? sizeof(To) : 4);
        std::uint32_t want = 0;
        if (i < offset || i >= offset + n) {
          std::memset(&want, kJunk & 0xff, sizeof(To));
        } else {
          const To w = static_cast<To>(in[i]);
          std::memcpy(&want, &w, sizeof(To));
        }
        ASSERT_EQ(got, want) << label << ": offset " << offset << ", n " << n << ", index " << i;
      }
    }
  }
}

void check_path(const ConvertPath& p, const std::string& label) {
  if (p.narrow_bf16 != nullptr) {
    check_narrow<bf16>(p.narrow_bf16, label + " narrow bf16");
    check_tails<float, bf16>(p.narrow_bf16, label + " narrow bf16");
  }
  if (p.narrow_fp16 != nullptr) {
    check_narrow<fp16>(p.narrow_fp16, label + " narrow fp16");
    check_tails<float, fp16>(p.narrow_fp16, label + " narrow fp16");
  }
  if (p.widen_bf16 != nullptr) {
    check_widen<bf16>(p.widen_bf16, label + " widen bf16");
    check_tails<bf16, float>(p.widen_bf16, label + " widen bf16");
  }
  if (p.widen_fp16 != nullptr) {
    check_widen<fp16>(p.widen_fp16, label + " widen fp16");
    check_tails<fp16, float>(p.widen_fp16, label + " widen fp16");
  }
}

class RestoreTarget : public ::testing::Test {
 protected:
  void TearDown() override { force_target(0); }
};

using Convert = RestoreTarget;

TEST_F(Convert, EveryHighwayTargetIsBitwiseTheScalarConversion) {
  const auto targets = supported_targets();
  ASSERT_FALSE(targets.empty());
  for (const auto& t : targets) {
    force_target(t.bits);
    check_path(kernels::simd::highway_convert(), "highway " + t.name);
  }
}

TEST_F(Convert, NativePathsAreBitwiseTheScalarConversion) {
  const auto paths = kernels::simd::convert_paths();
  for (std::size_t i = 1; i < paths.size(); ++i) check_path(paths[i], paths[i].name);
  if (!kernels::simd::cpu_has_avx512_bf16()) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  EXPECT_EQ(paths.size(), 2u);
  EXPECT_NE(kernels::simd::avx512_bf16_convert().narrow_bf16, nullptr);
}

// The CPUID check agrees with the kernel's view of the CPU (Linux lists avx512_bf16 in
// /proc/cpuinfo only when the CPU has it and the kernel enabled AVX-512 state).
TEST_F(Convert, Avx512Bf16DetectionAgreesWithProcCpuinfo) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  if (!cpuinfo) GTEST_SKIP() << "no /proc/cpuinfo";
  std::string line;
  bool listed = false;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) == 0) {
      listed = (line + " ").find(" avx512_bf16 ") != std::string::npos;
      break;
    }
  }
  EXPECT_EQ(kernels::simd::cpu_has_avx512_bf16(), listed);
  // Restricting Highway's targets does not hide it.
  force_target(supported_targets().back().bits);
  EXPECT_EQ(kernels::simd::cpu_has_avx512_bf16(), listed);
}

// The native instruction is bypassed for a step with a subnormal or NaN anywhere in it: put one
// at every position of a 32-value step among normal values.
TEST_F(Convert, NativeBf16HandlesAnUnusualValueAtEveryPosition) {
  const auto path = kernels::simd::avx512_bf16_convert();
  if (path.narrow_bf16 == nullptr) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  for (const std::uint32_t unusual : {0x007fffffu, 0x80000001u, 0x7f800001u, 0xffc12345u}) {
    for (std::size_t at = 0; at < 64; ++at) {
      std::vector<float> in(64);
      for (std::size_t i = 0; i < in.size(); ++i) {
        in[i] = std::bit_cast<float>(0x3f808000u + static_cast<std::uint32_t>(i) * 0x10000u);
      }
      in[at] = std::bit_cast<float>(unusual);
      std::vector<bf16> out(in.size());
      path.narrow_bf16(in.data(), out.data(), in.size());
      for (std::size_t i = 0; i < in.size(); ++i) {
        ASSERT_EQ(out[i].bits, bf16(in[i]).bits) << std::hex << unusual << " at " << at;
      }
    }
  }
}

// All 2^32 floats through the paths that dispatch picks on this CPU (bnorm::convert), as runs
// of equal results, against PyTorch's.
template <class T16>
test::Runs runs_of_every_float() {
  return test::runs_of_every_float([](std::uint64_t first, std::size_t n, std::uint16_t* out) {
    thread_local std::vector<float> in;
    in.resize(n);
    for (std::size_t k = 0; k < n; ++k) {
      in[k] = std::bit_cast<float>(static_cast<std::uint32_t>(first + k));
    }
    convert(std::span<const float>(in), std::span<T16>(reinterpret_cast<T16*>(out), n));
  });
}

TEST_F(Convert, DispatchedNarrowingIsBitwisePyTorchOnEveryFloat) {
  if (test::kSanitized) GTEST_SKIP() << "all 2^32 floats: in the release build only";
  EXPECT_EQ(runs_of_every_float<bf16>(), fixture().narrow_bf16);
  EXPECT_EQ(runs_of_every_float<fp16>(), fixture().narrow_fp16);
}

TEST_F(Convert, PublicBulkConversionsRoundTrip) {
  std::vector<float> x(1001);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.37f - 150.0f;
  std::vector<bf16> b(x.size());
  std::vector<fp16> h(x.size());
  convert(std::span<const float>(x), std::span<bf16>(b));
  convert(std::span<const float>(x), std::span<fp16>(h));
  std::vector<float> back_b(x.size()), back_h(x.size());
  convert(std::span<const bf16>(b), std::span<float>(back_b));
  convert(std::span<const fp16>(h), std::span<float>(back_h));
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(back_b[i], static_cast<float>(bf16(x[i])));
    EXPECT_EQ(back_h[i], static_cast<float>(fp16(x[i])));
    EXPECT_LE(std::abs(back_b[i] - x[i]), std::abs(x[i]) * 0x1p-8f);
    EXPECT_LE(std::abs(back_h[i] - x[i]), std::abs(x[i]) * 0x1p-11f);
  }
}

}  // namespace
}  // namespace bnorm
