// MpiCommunicator itself: rank order, sums, sub-communicators, and errors as bnorm::Error.
#include <gtest/gtest.h>
#include <mpi.h>

#include <bnorm/mpi.hpp>
#include <string>
#include <vector>

#include "comm/mpi_error.hpp"
#include "harness.hpp"

namespace bnorm_mpi_test {
namespace {

TEST(MpiCommunicator, SizeAndRankAreThoseOfTheCommunicator) {
  int size = 0;
  int rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  EXPECT_EQ(world().size(), size);
  EXPECT_EQ(world().rank(), rank);
  // A duplicate: same group, different context, so bnorm's messages never match the caller's.
  int compare = MPI_UNEQUAL;
  MPI_Comm_compare(world().comm(), MPI_COMM_WORLD, &compare);
  EXPECT_EQ(compare, MPI_CONGRUENT);
}

TEST(MpiCommunicator, AllgatherIsInRankOrder) {
  const auto& comm = world();
  const std::vector<double> local{10.0 * comm.rank(), 10.0 * comm.rank() + 1, -1.5};
  std::vector<double> all(local.size() * static_cast<std::size_t>(comm.size()), 99);
  comm.allgather(local, all);
  for (int r = 0; r < comm.size(); ++r) {
    EXPECT_EQ(all[3 * static_cast<std::size_t>(r)], 10.0 * r);
    EXPECT_EQ(all[3 * static_cast<std::size_t>(r) + 1], 10.0 * r + 1);
    EXPECT_EQ(all[3 * static_cast<std::size_t>(r) + 2], -1.5);
  }
}

TEST(MpiCommunicator, AllreduceSumsInPlace) {
  const auto& comm = world();
  std::vector<double> values{1.0, static_cast<double>(comm.rank()), 0.25};
  comm.allreduce_sum(values);
  const double n = comm.size();
  EXPECT_EQ(values[0], n);
  EXPECT_EQ(values[1], n * (n - 1) / 2);
  EXPECT_EQ(values[2], 0.25 * n);
}

TEST(MpiCommunicator, EmptySpansAreFine) {
  std::vector<double> none;
  world().allreduce_sum(none);
  world().allgather(none, none);
  EXPECT_TRUE(all_ranks(world(), true));
}

// Works on a sub-communicator: even and odd ranks form two groups that synchronize separately.
TEST(MpiCommunicator, WorksOnSubCommunicators) {
  MPI_Comm half = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, world().rank() % 2, world().rank(), &half);
  {
    const bnorm::MpiCommunicator comm(half);
    const int world_size = world().size();
    const int parity = world().rank() % 2;
    EXPECT_EQ(comm.size(), (world_size + 1 - parity) / 2);
    EXPECT_EQ(comm.rank(), world().rank() / 2);
    std::vector<double> rank_of_world{static_cast<double>(world().rank())};
    comm.allreduce_sum(rank_of_world);
    double want = 0;
    for (int r = parity; r < world_size; r += 2) want += r;
    EXPECT_EQ(rank_of_world[0], want);
  }
  MPI_Comm_free(&half);
}

TEST(MpiCommunicator, AllgatherSizeMismatchIsAnError) {
  const auto& comm = world();
  std::vector<double> local(2), all(2 * static_cast<std::size_t>(comm.size()) + 1);
  try {
    comm.allgather(local, all);
    ADD_FAILURE() << "no error";
  } catch (const bnorm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("all has " + std::to_string(all.size()) + " values"),
              std::string::npos)
        << e.what();
  }
}

TEST(MpiCommunicator, NullCommunicatorIsAnError) {
  try {
    const bnorm::MpiCommunicator comm(MPI_COMM_NULL);
    ADD_FAILURE() << "no error";
  } catch (const bnorm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("MPI_COMM_NULL"), std::string::npos) << e.what();
  }
}

// An intercommunicator's collectives exchange with the remote group: not a group of ranks
// sharing one batch, so it is refused (every rank of the intercommunicator throws).
TEST(MpiCommunicator, IntercommunicatorIsAnError) {
  if (world().size() < 2) GTEST_SKIP() << "needs 2 ranks";
  const int colour = world().rank() % 2;
  MPI_Comm half = MPI_COMM_NULL;
  MPI_Comm inter = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, colour, world().rank(), &half);
  // Local leader: rank 0 of each half; remote leader: world rank 1 for evens, 0 for odds.
  MPI_Intercomm_create(half, 0, MPI_COMM_WORLD, colour == 0 ? 1 : 0, 17, &inter);
  try {
    const bnorm::MpiCommunicator comm(inter);
    ADD_FAILURE() << "no error";
  } catch (const bnorm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("intercommunicator"), std::string::npos) << e.what();
  }
  MPI_Comm_free(&inter);
  MPI_Comm_free(&half);
}

// A failed MPI call becomes bnorm::Error carrying MPI's own error string.
TEST(MpiCommunicator, MpiErrorCodesBecomeErrorsWithMpisText) {
  EXPECT_NO_THROW(bnorm::mpi_detail::check(MPI_SUCCESS, "f", "MPI_Allgather"));
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(MPI_ERR_TRUNCATE, text, &length);
  try {
    bnorm::mpi_detail::check(MPI_ERR_TRUNCATE, "MpiCommunicator::allgather", "MPI_Allgather");
    ADD_FAILURE() << "no error";
  } catch (const bnorm::Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("MpiCommunicator::allgather: MPI_Allgather failed: "), std::string::npos)
        << message;
    EXPECT_NE(message.find(std::string(text, static_cast<std::size_t>(length))), std::string::npos)
        << message;
  }
}

// An MPI call that really fails on bnorm's duplicate returns (MPI_ERRORS_RETURN) instead of
// aborting the job, and the caller's communicator keeps its own handler.
TEST(MpiCommunicator, ErrorsReturnOnTheDuplicateOnly) {
  MPI_Errhandler handler;
  MPI_Comm_get_errhandler(world().comm(), &handler);
  EXPECT_EQ(handler, MPI_ERRORS_RETURN);
  MPI_Errhandler_free(&handler);
  MPI_Comm_get_errhandler(MPI_COMM_WORLD, &handler);
  EXPECT_EQ(handler, MPI_ERRORS_ARE_FATAL);
  MPI_Errhandler_free(&handler);
  // A negative count is invalid: the call returns an error code on the duplicate.
  double value = 0;
  const int code = MPI_Bcast(&value, -1, MPI_DOUBLE, 0, world().comm());
  EXPECT_NE(code, MPI_SUCCESS);
  EXPECT_THROW(bnorm::mpi_detail::check(code, "test", "MPI_Bcast"), bnorm::Error);
}

}  // namespace
}  // namespace bnorm_mpi_test
