// StandardScaler's synchronized fit over MPI: every rank holds a slice of one data set (rank 0
// none at all when there are several ranks, the others uneven slices), and every rank must end
// with the statistics of the whole data set, as one process fitting all of it computes them,
// bitwise identical on every rank. Invalid input on one rank fails every rank, without hanging.
#include <gtest/gtest.h>

#include <bnorm/standard_scaler.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "harness.hpp"

namespace bnorm_mpi_test {
namespace {

using bnorm::StandardScaler;
constexpr std::int64_t kRows = 157;
constexpr std::int64_t kFeatures = 4;

// The global data: columns with different means and spreads, NaNs if asked.
template <class T>
std::vector<T> global_data(bool nans) {
  const double means[] = {3, -1e4, 0.5, 1e6}, stds[] = {1, 20, 1e-3, 1};
  std::mt19937_64 gen(17);
  std::normal_distribution<double> n01;
  std::vector<T> x;
  for (std::int64_t r = 0; r < kRows; ++r) {
    for (std::int64_t f = 0; f < kFeatures; ++f) {
      x.push_back(static_cast<T>(means[f] + stds[f] * n01(gen)));
      if (nans && gen() % 9 == 0) x.back() = std::numeric_limits<T>::quiet_NaN();
    }
  }
  return x;
}

template <class T>
std::vector<T> global_weights() {
  std::mt19937_64 gen(19);
  std::vector<T> w;
  for (std::int64_t r = 0; r < kRows; ++r)
    w.push_back(static_cast<T>(static_cast<double>(gen() % 9) / 4.0));
  return w;
}

// Rows [begin, end) of this rank: none on rank 0 when size > 1, quadratic boundaries after.
std::pair<std::int64_t, std::int64_t> my_rows(const bnorm::Communicator& comm) {
  const std::int64_t s = comm.size(), r = comm.rank();
  if (s == 1) return {0, kRows};
  if (r == 0) return {0, 0};
  const std::int64_t k = s - 1;
  return {kRows * (r - 1) * (r - 1) / (k * k), kRows * r * r / (k * k)};
}

// Every rank's values equal rank 0's, bit for bit.
void expect_same_on_every_rank(std::span<const double> values, const std::string& what) {
  const auto& comm = world();
  std::vector<double> all(values.size() * static_cast<std::size_t>(comm.size()));
  comm.allgather(values, all);
  for (int r = 1; r < comm.size(); ++r) {
    for (std::size_t k = 0; k < values.size(); ++k) {
      const double a = all[k], b = all[static_cast<std::size_t>(r) * values.size() + k];
      EXPECT_TRUE(std::memcmp(&a, &b, sizeof a) == 0) << what << "[" << k << "] rank " << r;
    }
  }
}

constexpr double kEps = std::numeric_limits<double>::epsilon();
double mean_tol(const StandardScaler& s, std::size_t f) {
  return 8 * kEps * (std::abs(s.mean()[f]) + 4 * s.scale()[f]);
}
double var_tol(const StandardScaler& s, std::size_t f) {
  return 1e-13 * s.var()[f] + 16 * kEps * std::abs(s.mean()[f]) * s.scale()[f];
}

template <class T>
void check_synchronized_fit(bool nans, bool weighted) {
  const auto& comm = world();
  SCOPED_TRACE(std::string(sizeof(T) == 4 ? "float" : "double") + (nans ? " nans" : "") +
               (weighted ? " weighted" : ""));
  const auto x = global_data<T>(nans);
  const auto w = weighted ? global_weights<T>() : std::vector<T>{};
  StandardScaler single;
  single.fit(std::span<const T>(x), kFeatures, std::span<const T>(w));

  const auto [begin, end] = my_rows(comm);
  const auto mine =
      std::span<const T>(x).subspan(static_cast<std::size_t>(begin * kFeatures),
                                    static_cast<std::size_t>((end - begin) * kFeatures));
  const auto my_w = weighted ? std::span<const T>(w).subspan(static_cast<std::size_t>(begin),
                                                             static_cast<std::size_t>(end - begin))
                             : std::span<const T>();
  StandardScaler sync;
  sync.fit(mine, kFeatures, comm, my_w);

  for (std::size_t f = 0; f < kFeatures; ++f) {
    // Counts (sums of weights in quarters) are exact; the moments differ from the one-process
    // fit only by the merge tree: within 8 ulps of the data's magnitude for the mean; for the
    // variance 1e-13 relative plus what a merge of batches whose means are known to an ulp of
    // |mean| can move it: 16 eps |mean| std (the 1e6 +- 1 column needs that term).
    EXPECT_EQ(sync.n_samples_seen()[f], single.n_samples_seen()[f]) << f;
    EXPECT_NEAR(sync.mean()[f], single.mean()[f], mean_tol(single, f)) << f;
    EXPECT_NEAR(sync.var()[f], single.var()[f], var_tol(single, f)) << f;
  }
  expect_same_on_every_rank(sync.mean(), "mean");
  expect_same_on_every_rank(sync.var(), "var");
  expect_same_on_every_rank(sync.scale(), "scale");

  // Synchronized partial_fit in two steps (the second with this rank's slice again) equals
  // a one-process fit of the data twice.
  sync.partial_fit(mine, kFeatures, comm, my_w);
  std::vector<T> twice = x;
  twice.insert(twice.end(), x.begin(), x.end());
  std::vector<T> w_twice = w;
  w_twice.insert(w_twice.end(), w.begin(), w.end());
  StandardScaler single_twice;
  single_twice.fit(std::span<const T>(twice), kFeatures, std::span<const T>(w_twice));
  for (std::size_t f = 0; f < kFeatures; ++f) {
    EXPECT_EQ(sync.n_samples_seen()[f], single_twice.n_samples_seen()[f]);
    EXPECT_NEAR(sync.mean()[f], single_twice.mean()[f], mean_tol(single_twice, f)) << f;
    EXPECT_NEAR(sync.var()[f], single_twice.var()[f], var_tol(single_twice, f)) << f;
  }
  expect_same_on_every_rank(sync.var(), "var after partial_fit");
}

TEST(MpiStandardScaler, SynchronizedFitEqualsOneProcessOnAllTheData) {
  for (const bool nans : {false, true}) {
    for (const bool weighted : {false, true}) {
      check_synchronized_fit<float>(nans, weighted);
      check_synchronized_fit<double>(nans, weighted);
    }
  }
}

TEST(MpiStandardScaler, InvalidInputOnOneRankFailsEveryRankWithoutHanging) {
  const auto& comm = world();
  const int last = comm.size() - 1;
  std::vector<double> x{1, 2, 3, 4};
  if (comm.rank() == last) x[2] = std::numeric_limits<double>::infinity();
  StandardScaler s;
  std::string message;
  try {
    s.fit(std::span<const double>(x), 2, comm);
  } catch (const bnorm::Error& e) {
    message = e.what();
  }
  if (comm.rank() == last) {
    EXPECT_NE(message.find("x[row 1, feature 0] = inf"), std::string::npos) << message;
    EXPECT_NE(message.find("(rank " + std::to_string(last)), std::string::npos) << message;
  } else {
    EXPECT_NE(message.find("rank " + std::to_string(last) + "'s input was invalid"),
              std::string::npos)
        << message;
  }
  EXPECT_FALSE(s.fitted());

  // Different feature counts: every rank throws (the data is the same size everywhere).
  message.clear();
  const std::vector<double> ok{1, 2, 3, 4};
  const std::int64_t features = comm.size() > 1 && comm.rank() == last ? 4 : 2;
  try {
    s.fit(std::span<const double>(ok), features, comm);
  } catch (const bnorm::Error& e) {
    message = e.what();
  }
  if (comm.size() > 1) {
    EXPECT_NE(message.find("expected the same number of features on every rank"), std::string::npos)
        << message;
  }

  // The group still works: a valid synchronized fit right after.
  s.fit(std::span<const double>(ok), 2, comm);
  EXPECT_EQ(s.n_samples_seen()[0], 2.0 * comm.size());
  EXPECT_EQ(s.mean()[0], 2);
}

}  // namespace
}  // namespace bnorm_mpi_test
