// main() of the MPI tests: MPI is initialized once for the process (bnorm::MpiSession), the
// tests share one MpiCommunicator over MPI_COMM_WORLD, and only rank 0 prints the usual gtest
// report; other ranks print their failures, prefixed with their rank.
#include <gtest/gtest.h>

#include <bnorm/mpi.hpp>
#include <cstdio>
#include <string>

#include "harness.hpp"

namespace bnorm_mpi_test {
namespace {

const bnorm::MpiCommunicator* world_comm = nullptr;

// Prints failed assertions of a rank other than 0 (its full report would interleave with rank
// 0's).
class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  // current_test_info() would deadlock here (gtest holds its lock while reporting a result),
  // so the test's name is kept from OnTestStart.
  void OnTestStart(const testing::TestInfo& info) override {
    test_ = std::string(info.test_suite_name()) + "." + info.name();
  }
  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s: %s:%d: %s\n", rank_, test_.c_str(),
                 result.file_name() ? result.file_name() : "?", result.line_number(),
                 result.message());
  }

 private:
  int rank_;
  std::string test_;
};

}  // namespace

const bnorm::MpiCommunicator& world() {
  return *world_comm;
}

}  // namespace bnorm_mpi_test

int main(int argc, char** argv) {
  const bnorm::MpiSession session(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  int result = 1;
  {
    const bnorm::MpiCommunicator world(MPI_COMM_WORLD);
    bnorm_mpi_test::world_comm = &world;
    if (world.rank() != 0) {
      testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new bnorm_mpi_test::RankFailurePrinter(world.rank()));
    }
    result = RUN_ALL_TESTS();
    bnorm_mpi_test::world_comm = nullptr;
  }
  return result;
}
