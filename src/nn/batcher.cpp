// Batcher: per-epoch Fisher-Yates permutations drawn from Rng(seed, epoch).
#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/nn/batcher.hpp"
#include "bnorm/nn/rng.hpp"

namespace bnorm::nn {

Batcher::Batcher(std::int64_t examples, std::int64_t batch, std::uint64_t seed)
    : examples_(examples), batch_(batch) {
  if (examples <= 0) throw Error(fmt::format("Batcher: {} examples; expected > 0", examples));
  if (batch <= 0) throw Error(fmt::format("Batcher: batch {}; expected > 0", batch));
  state_.seed = seed;
  indices_.resize(static_cast<std::size_t>(batch));
  shuffle_epoch();
}

void Batcher::shuffle_epoch() {
  // A distinct stream per epoch: the seed and the epoch mixed by Rng's splitmix64 seeding.
  Rng rng(state_.seed ^ (0xD1B54A32D192ED03ULL * static_cast<std::uint64_t>(state_.epoch + 1)));
  permutation_.resize(static_cast<std::size_t>(examples_));
  for (std::int64_t i = 0; i < examples_; ++i) permutation_[static_cast<std::size_t>(i)] = i;
  for (std::size_t i = permutation_.size() - 1; i > 0; --i) {
    std::swap(permutation_[i], permutation_[rng.below(i + 1)]);
  }
}

std::span<const std::int64_t> Batcher::next() {
  for (auto& index : indices_) {
    if (state_.cursor == examples_) {
      ++state_.epoch;
      state_.cursor = 0;
      shuffle_epoch();
    }
    index = permutation_[static_cast<std::size_t>(state_.cursor++)];
  }
  return indices_;
}

void Batcher::set_state(const State& state) {
  if (state.epoch < 0 || state.cursor < 0 || state.cursor > examples_) {
    throw Error(
        fmt::format("Batcher state: epoch {}, cursor {}; expected epoch >= 0 and cursor "
                    "in [0, {}] (the number of training examples)",
                    state.epoch, state.cursor, examples_));
  }
  state_ = state;
  shuffle_epoch();
}

template <class T>
void gather(const Dataset& data, std::span<const std::int64_t> indices, Tensor<T>& x,
            std::vector<std::int32_t>& labels) {
  const std::int64_t f = data.features();
  x.resize(static_cast<std::int64_t>(indices.size()), f);
  labels.resize(indices.size());
  const T scale = T{1} / T{255};
  for (std::size_t r = 0; r < indices.size(); ++r) {
    const std::int64_t i = indices[r];
    if (i < 0 || i >= data.size()) {
      throw Error(fmt::format("gather: index {}; expected [0, {})", i, data.size()));
    }
    const std::uint8_t* src = data.images.pixels.data() + i * f;
    T* dst = x.data() + static_cast<std::int64_t>(r) * f;
    for (std::int64_t j = 0; j < f; ++j) dst[j] = static_cast<T>(src[j]) * scale;
    labels[r] = data.labels[static_cast<std::size_t>(i)];
  }
}

template void gather(const Dataset&, std::span<const std::int64_t>, Tensor<float>&,
                     std::vector<std::int32_t>&);
template void gather(const Dataset&, std::span<const std::int64_t>, Tensor<double>&,
                     std::vector<std::int32_t>&);

Shard shard_of(std::int64_t global, int rank, int ranks) {
  if (ranks <= 0 || rank < 0 || rank >= ranks) {
    throw Error(fmt::format("shard_of: rank {} of {}; expected 0 <= rank < ranks", rank, ranks));
  }
  return {global * rank / ranks, global * (rank + 1) / ranks};
}

}  // namespace bnorm::nn
