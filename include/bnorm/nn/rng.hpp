// Rng: a small, seeded, portable random number generator (xoshiro256**).
//
// The standard library's distributions are implementation-defined, so a run would not be
// reproducible across standard libraries; this one is specified here down to the bit.
#pragma once

#include <array>
#include <cstdint>

namespace bnorm::nn {

class Rng {
 public:
  using State = std::array<std::uint64_t, 4>;

  // The state is filled from `seed` by splitmix64 (never all zero).
  explicit Rng(std::uint64_t seed);

  [[nodiscard]] std::uint64_t next_u64();
  // Uniform in [0, 1) with 53 random bits.
  [[nodiscard]] double uniform();
  // Uniform in [0, n) without modulo bias. Requires n > 0.
  [[nodiscard]] std::uint64_t below(std::uint64_t n);
  // Standard normal by Box-Muller (one value per two uniforms; the second is discarded so the
  // state alone determines the stream).
  [[nodiscard]] double normal();

  [[nodiscard]] const State& state() const { return state_; }
  void set_state(const State& state) { state_ = state; }

 private:
  State state_{};
};

}  // namespace bnorm::nn
