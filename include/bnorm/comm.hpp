// Communicator: what synchronized batch norm needs from a group of processes.
#pragma once

#include <span>

namespace bnorm {

// A group of processes that each hold a slice of one global batch. Every rank must call the
// same collectives in the same order with spans of the same size, also when it holds no
// samples, or the group hangs.
class Communicator {
 public:
  virtual ~Communicator() = default;
  [[nodiscard]] virtual int size() const = 0;
  [[nodiscard]] virtual int rank() const = 0;
  // In place: values[k] becomes the sum over ranks of values[k].
  virtual void allreduce_sum(std::span<double> values) const = 0;
  // Requires: all.size() == local.size() * size(). Ensures: all holds every rank's `local`
  // in rank order (rank r's block at offset r * local.size()).
  virtual void allgather(std::span<const double> local, std::span<double> all) const = 0;
};

// The group of one: allreduce is the identity and allgather a copy.
class LocalCommunicator final : public Communicator {
 public:
  [[nodiscard]] int size() const override { return 1; }
  [[nodiscard]] int rank() const override { return 0; }
  void allreduce_sum(std::span<double> values) const override;
  void allgather(std::span<const double> local, std::span<double> all) const override;
};

}  // namespace bnorm
