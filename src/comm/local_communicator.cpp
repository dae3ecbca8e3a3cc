// LocalCommunicator: the group of one process.
#include <fmt/format.h>

#include <algorithm>

#include "bnorm/comm.hpp"
#include "bnorm/error.hpp"

namespace bnorm {

void LocalCommunicator::allreduce_sum(std::span<double> /*values*/) const {}

void LocalCommunicator::allgather(std::span<const double> local, std::span<double> all) const {
  if (all.size() != local.size()) {
    throw Error(fmt::format("allgather: output has {} values; expected {} (local size x 1 rank)",
                            all.size(), local.size()));
  }
  std::copy(local.begin(), local.end(), all.begin());
}

}  // namespace bnorm
