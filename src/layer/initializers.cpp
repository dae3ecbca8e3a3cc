// Initializers with a portable generator: splitmix64 (Steele et al. 2014) gives the same
// sequence everywhere, unlike std::normal_distribution whose algorithm is unspecified.
#include "bnorm/initializers.hpp"

#include <fmt/format.h>

#include <cmath>
#include <numbers>

#include "bnorm/error.hpp"

namespace bnorm {
namespace {

class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t state_;
};

template <class T>
void fill_impl(const Initializer& init, std::span<T> out) {
  using Kind = Initializer::Kind;
  SplitMix64 rng(init.seed);
  for (std::size_t i = 0; i < out.size(); ++i) {
    double v = init.a;
    if (init.kind == Kind::kRandomUniform) v = init.a + (init.b - init.a) * rng.uniform();
    if (init.kind == Kind::kRandomNormal) {
      // Box-Muller; 1 - u is in (0, 1], so the log is finite.
      const double u1 = 1 - rng.uniform();
      const double u2 = rng.uniform();
      v = init.a + init.b * std::sqrt(-2 * std::log(u1)) * std::cos(2 * std::numbers::pi * u2);
    }
    out[i] = static_cast<T>(v);
  }
}

}  // namespace

void Initializer::fill(std::span<float> out) const {
  fill_impl(*this, out);
}
void Initializer::fill(std::span<double> out) const {
  fill_impl(*this, out);
}

void Initializer::validate(const char* what) const {
  const auto fail = [&](const char* why) {
    throw Error(fmt::format("BatchNorm: {} = {{a = {}, b = {}}}: {}", what, a, b, why));
  };
  if (!std::isfinite(a) || !std::isfinite(b)) fail("expected finite parameters");
  if (kind == Kind::kRandomUniform && b < a) fail("expected minval <= maxval");
  if (kind == Kind::kRandomNormal && b < 0) fail("expected stddev >= 0");
}

}  // namespace bnorm
