// The phases API used for synchronized batch norm by hand, as a framework that overlaps
// communication with other work would:
//   forward:  channel_moments -> allgather -> merge_ranks -> normalize
//   backward: backward_sums   -> allreduce -> backward_input
// Proved equal to one process on the concatenated batch (harness.hpp) and, with the same
// collectives, bitwise equal to the synchronized functional API.
#include <gtest/gtest.h>
#include <mpi.h>

#include <bnorm/bnorm.hpp>
#include <bnorm/mpi.hpp>
#include <vector>

#include "harness.hpp"

namespace bnorm_mpi_test {
namespace {

template <class T>
constexpr T kEpsilon = static_cast<T>(1e-3);

// How the step communicates.
enum class Transport {
  kCommunicator,  // the Communicator's blocking collectives, as forward_training/backward do
  kNonblocking,   // MPI_Iallgather / MPI_Iallreduce on the MpiCommunicator's MPI_Comm, with
                  // room for other work between start and wait
};

template <class T>
Outputs<T> phases_step(const Batch<T>& b, const Communicator* comm, Transport transport) {
  const Geometry g = b.geometry();
  const auto n = static_cast<std::size_t>(g.size());
  const auto C = static_cast<std::size_t>(g.channels);
  const int ranks = comm != nullptr ? comm->size() : 1;
  static_assert(sizeof(bnorm::Moments) == 3 * sizeof(double), "Moments is sent as 3 doubles");

  // Forward phase 1: this rank's (count, mean, M2) per channel.
  std::vector<bnorm::Moments> local(C), gathered(C * static_cast<std::size_t>(ranks)), merged(C);
  bnorm::channel_moments(b.x, g, local);
  // Communicate: every rank's moments, in rank order.
  const std::span<const double> send(&local[0].count, 3 * C);
  const std::span<double> receive(&gathered[0].count, 3 * C * static_cast<std::size_t>(ranks));
  if (comm == nullptr) {
    std::copy(send.begin(), send.end(), receive.begin());
  } else if (transport == Transport::kCommunicator) {
    comm->allgather(send, receive);
  } else {
    MPI_Request request;
    MPI_Iallgather(send.data(), static_cast<int>(send.size()), MPI_DOUBLE, receive.data(),
                   static_cast<int>(send.size()), MPI_DOUBLE, world().comm(), &request);
    // ... work that does not need the statistics runs here (e.g. another layer's gradients) ...
    MPI_Wait(&request, MPI_STATUS_IGNORE);
  }
  bnorm::merge_ranks(gathered, ranks, merged);

  // Forward phase 2: normalize with the merged statistics (double).
  std::vector<double> mean_d(C), variance_d(C);
  std::vector<T> mean(C), variance(C), y(n, static_cast<T>(8));
  for (std::size_t c = 0; c < C; ++c) {
    mean_d[c] = merged[c].mean;
    variance_d[c] = merged[c].count > 0 ? merged[c].m2 / merged[c].count : 0.0;
    mean[c] = static_cast<T>(mean_d[c]);
    variance[c] = static_cast<T>(variance_d[c]);
  }
  bnorm::normalize(b.x, std::span<T>(y), g, b.gamma, b.beta, mean_d, variance_d, kEpsilon<T>);

  // Backward phase 1: local sums, packed with the count for one collective.
  std::vector<double> sums(2 * C + 1);
  const std::span<double> sum_dy(sums.data(), C);
  const std::span<double> sum_dy_xhat(sums.data() + C, C);
  bnorm::backward_sums(b.x, b.dy, g, std::span<const T>(mean), std::span<const T>(variance),
                       kEpsilon<T>, sum_dy, sum_dy_xhat);
  sums[2 * C] = static_cast<double>(g.count_per_channel());
  if (comm != nullptr && transport == Transport::kCommunicator) {
    comm->allreduce_sum(sums);
  } else if (comm != nullptr) {
    MPI_Request request;
    MPI_Iallreduce(MPI_IN_PLACE, sums.data(), static_cast<int>(sums.size()), MPI_DOUBLE, MPI_SUM,
                   world().comm(), &request);
    // ... other work ...
    MPI_Wait(&request, MPI_STATUS_IGNORE);
  }
  // Backward phase 2.
  std::vector<T> dx(n, static_cast<T>(8));
  bnorm::backward_input(b.x, b.dy, g, b.gamma, std::span<const T>(mean),
                        std::span<const T>(variance), kEpsilon<T>, sum_dy, sum_dy_xhat, sums[2 * C],
                        std::span<T>(dx));
  const ErrorScales s = error_scales<T>(b, mean, variance, kEpsilon<T>);
  Outputs<T> out;
  out.per_sample = {{"y", y, false, s.y}, {"dx", dx, false, s.dx}};
  out.per_channel = {
      {"batch_mean", mean, true, s.mean},
      {"batch_variance", variance, true, s.variance},
      {"dgamma", std::vector<T>(sum_dy_xhat.begin(), sum_dy_xhat.end()), false, s.dgamma},
      {"dbeta", std::vector<T>(sum_dy.begin(), sum_dy.end()), false, s.dbeta}};
  return out;
}

template <class T>
Outputs<T> functional_step(const Batch<T>& b, const Communicator& comm) {
  const Geometry g = b.geometry();
  const auto n = static_cast<std::size_t>(g.size());
  const auto C = static_cast<std::size_t>(g.channels);
  std::vector<T> y(n), dx(n), mean(C), variance(C), dgamma(C), dbeta(C);
  bnorm::forward_training(b.x, std::span<T>(y), g, b.gamma, b.beta, kEpsilon<T>, std::span<T>(mean),
                          std::span<T>(variance), comm);
  bnorm::backward(b.x, b.dy, g, b.gamma, std::span<const T>(mean), std::span<const T>(variance),
                  kEpsilon<T>, std::span<T>(dx), std::span<T>(dgamma), std::span<T>(dbeta), comm);
  Outputs<T> out;
  out.per_sample = {{"y", y}, {"dx", dx}};
  out.per_channel = {
      {"batch_mean", mean}, {"batch_variance", variance}, {"dgamma", dgamma}, {"dbeta", dbeta}};
  return out;
}

template <class T>
void run_all_cases(Transport transport) {
  const Communicator& comm = world();
  const Step<T> step = [transport](const Batch<T>& b, const Communicator* c) {
    return phases_step<T>(b, c, transport);
  };
  std::vector<Problem> list = problems();
  list.push_back(large_problem());
  for (const Problem& p : list) {
    for (const Split& split : splits(comm.size())) {
      SCOPED_TRACE(p.name + " split " + describe(split));
      const auto [mine, reference] =
          expect_matches_single_process<T>(step, p, split, Data::kRandom, comm);
      if (transport != Transport::kCommunicator) continue;
      // The same collectives as the functional API: the same bits.
      const GlobalBatch<T> global = make_global_batch<T>(p, split, Data::kRandom);
      const auto per_sample = static_cast<std::size_t>(values_per_sample(p));
      const auto begin = static_cast<std::size_t>(first_sample(split, comm.rank())) * per_sample;
      const auto count =
          static_cast<std::size_t>(split[static_cast<std::size_t>(comm.rank())]) * per_sample;
      const Batch<T> slice{full_shape(p, split[static_cast<std::size_t>(comm.rank())]),
                           p.axis,
                           std::span<const T>(global.x).subspan(begin, count),
                           std::span<const T>(global.dy).subspan(begin, count),
                           global.gamma,
                           global.beta};
      const Outputs<T> functional = functional_step<T>(slice, comm);
      for (std::size_t k = 0; k < mine.per_sample.size(); ++k) {
        expect_close<T>(mine.per_sample[k].name + " vs functional", mine.per_sample[k].values,
                        functional.per_sample[k].values, true);
      }
      for (std::size_t k = 0; k < mine.per_channel.size(); ++k) {
        expect_close<T>(mine.per_channel[k].name + " vs functional", mine.per_channel[k].values,
                        functional.per_channel[k].values, true);
      }
    }
  }
}

TEST(SynchronizedPhases, FloatBlockingEqualsFunctionalBitwise) {
  run_all_cases<float>(Transport::kCommunicator);
}
TEST(SynchronizedPhases, DoubleBlockingEqualsFunctionalBitwise) {
  run_all_cases<double>(Transport::kCommunicator);
}
TEST(SynchronizedPhases, FloatNonblockingEqualsSingleProcess) {
  run_all_cases<float>(Transport::kNonblocking);
}
TEST(SynchronizedPhases, DoubleNonblockingEqualsSingleProcess) {
  run_all_cases<double>(Transport::kNonblocking);
}

}  // namespace
}  // namespace bnorm_mpi_test
