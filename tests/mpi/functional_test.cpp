// Synchronized forward_training and backward over MPI equal one process holding the
// concatenated batch (harness.hpp says what is proved), and a global count of 1 is an error on
// every rank.
#include <gtest/gtest.h>

#include <bnorm/bnorm.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "harness.hpp"

namespace bnorm_mpi_test {
namespace {

template <class T>
constexpr T kEpsilon = static_cast<T>(1e-3);

// The functional API as a step: training forward, then backward, outputs pre-filled with junk
// (they must be assigned, not accumulated into).
template <class T>
Outputs<T> functional_step(const Batch<T>& b, const Communicator* comm) {
  const Geometry g = b.geometry();
  const auto n = static_cast<std::size_t>(g.size());
  const auto C = static_cast<std::size_t>(g.channels);
  const T junk = static_cast<T>(8);
  std::vector<T> y(n, junk), dx(n, junk);
  std::vector<T> mean(C, junk), variance(C, junk), dgamma(C, junk), dbeta(C, junk);
  if (comm != nullptr) {
    bnorm::forward_training(b.x, std::span<T>(y), g, b.gamma, b.beta, kEpsilon<T>,
                            std::span<T>(mean), std::span<T>(variance), *comm);
    bnorm::backward(b.x, b.dy, g, b.gamma, std::span<const T>(mean), std::span<const T>(variance),
                    kEpsilon<T>, std::span<T>(dx), std::span<T>(dgamma), std::span<T>(dbeta),
                    *comm);
  } else {
    bnorm::forward_training(b.x, std::span<T>(y), g, b.gamma, b.beta, kEpsilon<T>,
                            std::span<T>(mean), std::span<T>(variance));
    bnorm::backward(b.x, b.dy, g, b.gamma, std::span<const T>(mean), std::span<const T>(variance),
                    kEpsilon<T>, std::span<T>(dx), std::span<T>(dgamma), std::span<T>(dbeta));
  }
  const ErrorScales s = error_scales<T>(b, mean, variance, kEpsilon<T>);
  Outputs<T> out;
  out.per_sample = {{"y", y, false, s.y}, {"dx", dx, false, s.dx}};
  out.per_channel = {{"batch_mean", mean, true, s.mean},
                     {"batch_variance", variance, true, s.variance},
                     {"dgamma", dgamma, false, s.dgamma},
                     {"dbeta", dbeta, false, s.dbeta}};
  return out;
}

template <class T>
void run_all_cases(Data data) {
  const Communicator& comm = world();
  std::vector<Problem> list = problems();
  if (data == Data::kRandom) list.push_back(large_problem());
  for (const Problem& p : list) {
    for (const Split& split : splits(comm.size())) {
      SCOPED_TRACE(p.name + " split " + describe(split));
      expect_matches_single_process<T>(functional_step<T>, p, split, data, comm);
    }
  }
}

TEST(SynchronizedFunctional, FloatEqualsSingleProcess) {
  run_all_cases<float>(Data::kRandom);
}
TEST(SynchronizedFunctional, DoubleEqualsSingleProcess) {
  run_all_cases<double>(Data::kRandom);
}
TEST(SynchronizedFunctional, FloatExactStatisticsBitwise) {
  run_all_cases<float>(Data::kExact);
}
TEST(SynchronizedFunctional, DoubleExactStatisticsBitwise) {
  run_all_cases<double>(Data::kExact);
}

// With exact data the statistics are known in closed form: mean = centre, variance = M2 / n
// with M2 the sum of the squared offsets. An oracle independent of both code paths.
template <class T>
void expect_exact_statistics_equal_closed_form() {
  const Communicator& comm = world();
  for (const Problem& p : problems()) {
    for (const Split& split : splits(comm.size())) {
      SCOPED_TRACE(p.name + " split " + describe(split));
      const auto [mine, reference] =
          expect_matches_single_process<T>(functional_step<T>, p, split, Data::kExact, comm);
      double n = 0;
      double m2 = 0;
      for (const std::int64_t samples : split) {
        const std::int64_t m =
            bnorm::geometry_of(full_shape(p, samples), p.axis).count_per_channel();
        for (std::int64_t j = 0; j < m; ++j) m2 += exact_offset(j, m) * exact_offset(j, m);
        n += static_cast<double>(m);
      }
      const std::vector<T>& mean = mine.per_channel[0].values;
      const std::vector<T>& variance = mine.per_channel[1].values;
      for (std::size_t c = 0; c < mean.size(); ++c) {
        const double want_mean = n > 0 ? centre_of(static_cast<std::int64_t>(c)) : 0.0;
        EXPECT_TRUE(same_bits(mean[c], static_cast<T>(want_mean)))
            << "mean[" << c << "] " << mean[c];
        EXPECT_TRUE(same_bits(variance[c], static_cast<T>(n > 0 ? m2 / n : 0.0)))
            << "variance[" << c << "] " << variance[c] << ", expected " << m2 / n;
      }
    }
  }
}

TEST(SynchronizedFunctional, FloatExactStatisticsClosedForm) {
  expect_exact_statistics_equal_closed_form<float>();
}
TEST(SynchronizedFunctional, DoubleExactStatisticsClosedForm) {
  expect_exact_statistics_equal_closed_form<double>();
}

// A 32-bit FNV-1a hash, exactly representable as a double, to compare messages across ranks.
double message_hash(const std::string& s) {
  std::uint32_t h = 2166136261u;
  for (const char ch : s) h = (h ^ static_cast<unsigned char>(ch)) * 16777619u;
  return static_cast<double>(h);
}

// Expects `call` to throw bnorm::Error on every rank with the same message containing `needle`;
// the agreement is itself a collective, so reaching it proves nobody hung.
template <class F>
void expect_same_error_everywhere(const Communicator& comm, const std::string& needle, F&& call) {
  std::string message;
  try {
    call();
  } catch (const bnorm::Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find(needle), std::string::npos) << "message: '" << message << "'";
  const std::vector<double> hashes = gather_all(comm, std::vector<double>{message_hash(message)});
  for (int r = 0; r < comm.size(); ++r) {
    EXPECT_EQ(hashes[static_cast<std::size_t>(r)], hashes[0])
        << "rank " << r << " threw a different message than rank 0; mine: '" << message << "'";
  }
}

// One value per channel in the whole group (one sample of a layout with one value per sample and
// channel, on the last rank) is an error on every rank, even on ranks that hold nothing or where
// the local count would be fine (pytorch#36865: the check must use the global count).
template <class T>
void expect_global_count_of_one_throws() {
  const Communicator& comm = world();
  const std::vector<Problem> one_value = {{"(N,C) C=4", {4}, 1}, {"NHWC 1x1 C=3", {1, 1, 3}, -1}};
  for (const Problem& p : one_value) {
    SCOPED_TRACE(p.name);
    Split split(static_cast<std::size_t>(comm.size()), 0);
    split.back() = 1;
    const GlobalBatch<T> global = make_global_batch<T>(p, split, Data::kRandom);
    const bool last = comm.rank() == comm.size() - 1;
    const std::size_t n = last ? global.x.size() : 0;
    const Geometry g = bnorm::geometry_of(full_shape(p, last ? 1 : 0), p.axis);
    const auto C = static_cast<std::size_t>(g.channels);
    std::vector<T> y(n), dx(n), mean(C), variance(C, 1), dgamma(C), dbeta(C);
    const std::span<const T> x(global.x.data(), n);
    const std::span<const T> dy(global.dy.data(), n);
    const std::string needle = comm.size() > 1 ? "global, over all ranks" : "more than 1 value";
    expect_same_error_everywhere(comm, needle, [&] {
      bnorm::forward_training(x, std::span<T>(y), g, std::span<const T>(global.gamma),
                              std::span<const T>(global.beta), kEpsilon<T>, std::span<T>(mean),
                              std::span<T>(variance), comm);
    });
    expect_same_error_everywhere(comm, needle, [&] {
      bnorm::backward(x, dy, g, std::span<const T>(global.gamma), std::span<const T>(mean),
                      std::span<const T>(variance), kEpsilon<T>, std::span<T>(dx),
                      std::span<T>(dgamma), std::span<T>(dbeta), comm);
    });
  }
  // Still in step: a collective after the errors completes.
  EXPECT_TRUE(all_ranks(comm, true));
}

TEST(SynchronizedFunctional, FloatGlobalCountOfOneThrowsOnEveryRank) {
  expect_global_count_of_one_throws<float>();
}
TEST(SynchronizedFunctional, DoubleGlobalCountOfOneThrowsOnEveryRank) {
  expect_global_count_of_one_throws<double>();
}

}  // namespace
}  // namespace bnorm_mpi_test
