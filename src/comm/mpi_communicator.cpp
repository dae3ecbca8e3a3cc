// MpiCommunicator and MpiSession: the Communicator over an MPI communicator.
// Compiled only with BNORM_WITH_MPI (the top-level CMakeLists.txt adds src/comm/mpi_*.cpp).
#include <fmt/format.h>

#include <climits>
#include <cstddef>
#include <string_view>

#include "bnorm/error.hpp"
#include "bnorm/mpi.hpp"
#include "comm/mpi_error.hpp"

namespace bnorm {
namespace {

using mpi_detail::check;

// MPI counts are int (OpenMPI 4 has no large-count collectives).
int count_of(std::string_view fn, std::string_view name, std::size_t n) {
  if (n > static_cast<std::size_t>(INT_MAX)) {
    throw Error(fmt::format("{}: {} has {} values; expected at most {} (MPI counts are int)", fn,
                            name, n, INT_MAX));
  }
  return static_cast<int>(n);
}

bool mpi_initialized() {
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized != 0 && finalized == 0;
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm) {
  constexpr std::string_view fn = "MpiCommunicator";
  if (!mpi_initialized()) {
    throw Error(
        fmt::format("{}: MPI is not initialized (or already finalized); expected "
                    "MPI_Init before (bnorm::MpiSession does it for programs that own MPI)",
                    fn));
  }
  if (comm == MPI_COMM_NULL) {
    throw Error(
        fmt::format("{}: comm = MPI_COMM_NULL; expected a communicator this process "
                    "belongs to",
                    fn));
  }
  int inter = 0;
  check(MPI_Comm_test_inter(comm, &inter), fn, "MPI_Comm_test_inter");
  if (inter != 0) {
    throw Error(
        fmt::format("{}: comm is an intercommunicator; expected an intracommunicator "
                    "(its collectives would exchange with the remote group)",
                    fn));
  }
  // The caller's error handler (MPI_ERRORS_ARE_FATAL by default) applies until the duplicate
  // exists; from then on errors are returned and thrown.
  check(MPI_Comm_dup(comm, &comm_), fn, "MPI_Comm_dup");
  int code = MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  if (code == MPI_SUCCESS) code = MPI_Comm_size(comm_, &size_);
  if (code == MPI_SUCCESS) code = MPI_Comm_rank(comm_, &rank_);
  if (code != MPI_SUCCESS) {
    MPI_Comm_free(&comm_);
    check(code, fn, "MPI_Comm_set_errhandler/size/rank");
  }
}

MpiCommunicator::~MpiCommunicator() {
  // After MPI_Finalize nothing may be called; the duplicate is gone with MPI itself.
  if (comm_ != MPI_COMM_NULL && mpi_initialized()) MPI_Comm_free(&comm_);
}

void MpiCommunicator::allreduce_sum(std::span<double> values) const {
  constexpr std::string_view fn = "MpiCommunicator::allreduce_sum";
  const int n = count_of(fn, "values", values.size());
  check(MPI_Allreduce(MPI_IN_PLACE, values.data(), n, MPI_DOUBLE, MPI_SUM, comm_), fn,
        "MPI_Allreduce");
}

void MpiCommunicator::allgather(std::span<const double> local, std::span<double> all) const {
  constexpr std::string_view fn = "MpiCommunicator::allgather";
  if (all.size() != local.size() * static_cast<std::size_t>(size_)) {
    throw Error(fmt::format("{}: all has {} values; expected local size x ranks = {} x {} = {}", fn,
                            all.size(), local.size(), size_,
                            local.size() * static_cast<std::size_t>(size_)));
  }
  count_of(fn, "all", all.size());
  const int n = count_of(fn, "local", local.size());
  check(MPI_Allgather(local.data(), n, MPI_DOUBLE, all.data(), n, MPI_DOUBLE, comm_), fn,
        "MPI_Allgather");
}

MpiSession::MpiSession(int& argc, char**& argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized != 0) return;
  int provided = 0;
  check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MpiSession",
        "MPI_Init_thread");
  owner_ = true;
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owner_ && finalized == 0) MPI_Finalize();
}

}  // namespace bnorm
