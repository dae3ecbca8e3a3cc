// Batcher: a seeded, reproducible order of examples, cut into batches.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "bnorm/nn/idx.hpp"
#include "bnorm/nn/tensor.hpp"

namespace bnorm::nn {

// Examples are visited epoch after epoch, each epoch in a fresh permutation drawn by Fisher-Yates
// from Rng(seed, epoch): the permutation of an epoch depends only on (seed, epoch), so the
// whole order is a function of (seed, position) and the state to save is (epoch, cursor).
// A batch that reaches the end of an epoch continues in the next one (no example is dropped).
class Batcher {
 public:
  struct State {
    std::uint64_t seed = 0;
    std::int64_t epoch = 0;
    std::int64_t cursor = 0;  // position in the epoch's permutation
  };

  // Requires examples > 0 and batch > 0; throws bnorm::Error naming the argument otherwise.
  Batcher(std::int64_t examples, std::int64_t batch, std::uint64_t seed);

  // The next global batch: `batch` example indices.
  std::span<const std::int64_t> next();

  [[nodiscard]] const State& state() const { return state_; }
  // Throws bnorm::Error if the state does not fit this batcher (cursor outside the epoch).
  void set_state(const State& state);

 private:
  void shuffle_epoch();
  std::int64_t examples_, batch_;
  State state_;
  std::vector<std::int64_t> permutation_, indices_;
};

// Gathers rows `indices` of `data` into x (|indices|, features) scaled to [0, 1] and their
// labels into `labels`.
template <class T>
void gather(const Dataset& data, std::span<const std::int64_t> indices, Tensor<T>& x,
            std::vector<std::int32_t>& labels);

// The slice of a global batch of `global` examples that rank `rank` of `ranks` holds:
// [rank*global/ranks, (rank+1)*global/ranks). Every example is held by exactly one rank.
struct Shard {
  std::int64_t begin, end;
};
[[nodiscard]] Shard shard_of(std::int64_t global, int rank, int ranks);

}  // namespace bnorm::nn
