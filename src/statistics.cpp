// The statistics phase (statistics.hpp) and the moments' merges (phases.hpp: merge, merge_ranks).
#include "statistics.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>

#include "bnorm/error.hpp"
#include "bnorm/phases.hpp"
#include "kernels/registry.hpp"
#include "scratch.hpp"
#include "validate.hpp"

namespace bnorm {

Moments merge(const Moments& a, const Moments& b) {
  if (b.count == 0) return a;
  if (a.count == 0) return b;
  const double n = a.count + b.count;
  const double delta = b.mean - a.mean;
  // delta == 0 keeps the mean and adds the M2s exactly (and avoids inf * 0 for infinite means).
  if (delta == 0) return Moments{n, a.mean, a.m2 + b.m2};
  return Moments{n, a.mean + delta * (b.count / n),
                 a.m2 + b.m2 + delta * delta * (a.count * b.count / n)};
}

void merge_ranks(std::span<const Moments> per_rank, int ranks, std::span<Moments> merged) {
  if (ranks < 1 || per_rank.size() != static_cast<std::size_t>(ranks) * merged.size()) {
    throw Error(
        fmt::format("merge_ranks: per_rank has {} entries for {} ranks; expected ranks >= 1 "
                    "and ranks x channels = {} x {}",
                    per_rank.size(), ranks, ranks, merged.size()));
  }
  const std::size_t channels = merged.size();
  for (std::size_t c = 0; c < channels; ++c) {
    Moments acc;
    for (int r = 0; r < ranks; ++r) acc = merge(acc, per_rank[r * channels + c]);
    merged[c] = acc;
  }
}

}  // namespace bnorm

namespace bnorm::detail {

void require_more_than_one_value(const Caller& caller, double count, const Geometry& g,
                                 bool global) {
  if (count != 1) return;
  std::string input;
  if (global) {
    input = "global, over all ranks";
  } else if (!caller.shape.empty()) {
    input = fmt::format("input size [{}]", fmt::join(caller.shape, ", "));
  } else {
    input = fmt::format("geometry {}", validate::describe(g));
  }
  throw Error(fmt::format(
      "{}: Expected more than 1 value per channel when training, got 1 value per channel ({}); "
      "expected {}outer*inner >= 2, or 0 for an empty batch{}",
      caller.fn, input, global ? "a global " : "",
      caller.note.empty() ? std::string() : fmt::format(" ({})", caller.note)));
}

template <class T>
void store_statistics(std::span<const double> mean, std::span<const double> variance,
                      std::span<T> batch_mean, std::span<T> batch_variance) {
  for (std::size_t c = 0; c < mean.size(); ++c) {
    batch_mean[c] = static_cast<T>(mean[c]);
    batch_variance[c] = static_cast<T>(variance[c]);
  }
}

template <class T>
double batch_statistics(const Caller& caller, std::span<const T> x, const Geometry& g,
                        const Communicator* comm, SingleValue single_value, std::span<double> mean,
                        std::span<double> variance, std::span<T> batch_mean,
                        std::span<T> batch_variance) {
  const auto C = static_cast<std::size_t>(g.channels);
  const bool synchronized = comm != nullptr && comm->size() > 1;
  const int ranks = synchronized ? comm->size() : 1;
  // [local moments (C) | every rank's moments (ranks x C)]: local, then merged in rank order.
  const auto all = scratch<Moments>(ScratchSlot::kMoments, C * (1 + (synchronized ? ranks : 0)));
  const std::span<Moments> moments = all.first(C);
  kernels::select<T>(g).moments(x.data(), g, moments.data());
  if (synchronized) {
    static_assert(sizeof(Moments) == 3 * sizeof(double));
    const std::span<Moments> gathered = all.subspan(C);
    comm->allgather(std::span<const double>(&moments[0].count, 3 * C),
                    std::span<double>(&gathered[0].count, 3 * C * ranks));
    merge_ranks(gathered, ranks, moments);
  }
  // Every channel has the same count; an empty batch (0) gives mean 0, variance 0.
  const double count = C > 0 ? moments[0].count : 0.0;
  if (single_value == SingleValue::kReject) {
    require_more_than_one_value(caller, count, g, synchronized);
  }
  for (std::size_t c = 0; c < C; ++c) {
    mean[c] = moments[c].mean;
    variance[c] = count > 0 ? moments[c].m2 / count : 0.0;
  }
  store_statistics<T>(mean, variance, batch_mean, batch_variance);
  return count;
}

#define BNORM_INSTANTIATE(T)                                                               \
  template void store_statistics<T>(std::span<const double>, std::span<const double>,      \
                                    std::span<T>, std::span<T>);                           \
  template double batch_statistics<T>(const Caller&, std::span<const T>, const Geometry&,  \
                                      const Communicator*, SingleValue, std::span<double>, \
                                      std::span<double>, std::span<T>, std::span<T>);
BNORM_INSTANTIATE(float)
BNORM_INSTANTIATE(double)
#undef BNORM_INSTANTIATE

}  // namespace bnorm::detail
