// MpiCommunicator: synchronized batch norm across the processes of an MPI communicator.
//
// This header includes <mpi.h>, so bnorm.hpp does not include it: include it yourself, and only
// when bnorm was built with BNORM_WITH_MPI (the CMake target then defines BNORM_WITH_MPI=1 and
// links MPI::MPI_CXX for you).
//
//   bnorm::MpiSession mpi(argc, argv);                  // tools only: MPI_Init / MPI_Finalize
//   bnorm::MpiCommunicator comm(MPI_COMM_WORLD);        // or any sub-communicator
//   bnorm::forward_training(x, y, g, gamma, beta, eps, mean, var, comm);
#pragma once

// bnorm::bnorm defines BNORM_WITH_MPI=1 for its users when it was built with MpiCommunicator
// (-DBNORM_WITH_MPI=ON, the default when MPI is found); without that target, define it yourself.
#if !defined(BNORM_WITH_MPI) || !BNORM_WITH_MPI
#error "bnorm/mpi.hpp: this bnorm was built without MPI (configure it with -DBNORM_WITH_MPI=ON)"
#endif

#include <mpi.h>

#include <span>

#include "bnorm/comm.hpp"

namespace bnorm {

// The ranks of an existing communicator. The constructor duplicates it (MPI_Comm_dup, a
// collective over `comm`), so bnorm's collectives never match messages of the caller's, and
// sets MPI_ERRORS_RETURN on the duplicate only: a failing MPI call throws bnorm::Error with
// MPI's error string instead of aborting, and the caller's communicator is left as it was.
//
// Requires: MPI is initialized and not finalized (bnorm never calls MPI_Init; see MpiSession);
//           every rank of `comm` constructs it, and later calls the same collectives in the same
//           order with spans of the same sizes (as for any MPI collective). The object must be
//           destroyed before MPI_Finalize (the destructor frees the duplicate; after
//           finalization it does nothing).
// Throws:   bnorm::Error if MPI is not initialized, `comm` is MPI_COMM_NULL or an
//           intercommunicator, or an MPI call fails.
class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  [[nodiscard]] int size() const override { return size_; }
  [[nodiscard]] int rank() const override { return rank_; }
  // The duplicate that bnorm communicates on.
  [[nodiscard]] MPI_Comm comm() const { return comm_; }

  // MPI_Allreduce(MPI_SUM) in place. The MPI standard only recommends that every rank get the
  // same bits; OpenMPI's algorithms do (each combines the same partial sums on every rank, and
  // IEEE addition is commutative) and pick the algorithm from the sizes alone, so reruns repeat
  // the bits too. tests/mpi checks both. The summation order is MPI's, so sums may differ in the
  // last bits from a single process. Throws bnorm::Error if values.size() exceeds INT_MAX.
  void allreduce_sum(std::span<double> values) const override;
  // MPI_Allgather in rank order. Throws bnorm::Error unless all.size() == local.size() * size().
  void allgather(std::span<const double> local, std::span<double> all) const override;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int size_ = 0;
  int rank_ = 0;
};

// RAII for programs that own MPI (tools, tests, examples, benchmarks): initializes MPI with
// MPI_THREAD_FUNNELED if it is not initialized yet, and finalizes it on destruction only if it
// initialized it. Libraries and programs that call MPI_Init themselves do not need it.
// Throws bnorm::Error if MPI_Init_thread fails.
class MpiSession {
 public:
  MpiSession(int& argc, char**& argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool owner_ = false;
};

}  // namespace bnorm
