// Fused BN + ReLU and BN + Add + ReLU (include/bnorm/fused.hpp) against an independent double
// oracle written here (two-pass statistics, the paper's formulas), against the reference twin
// (BNORM_KERNEL=reference path), in place and out of place, at 1-3 threads (bitwise equal), and
// the argument checks. Data are shifted (beta ~ +1) so that ReLU zeroes a minority of outputs:
// a test whose expected output is mostly zeros would prove little (benchdnn's zero-trust rule).
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "bnorm/error.hpp"
#include "bnorm/fused.hpp"
#include "bnorm/kernels.hpp"

namespace bnorm {
namespace {

template <class T>
std::vector<T> random_vector(std::size_t n, double mean, double stddev, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, stddev);
  std::vector<T> v(n);
  for (auto& e : v) e = static_cast<T>(dist(rng));
  return v;
}

std::size_t index(const Geometry& g, std::int64_t o, std::int64_t c, std::int64_t i) {
  return static_cast<std::size_t>((o * g.channels + c) * g.inner + i);
}

// The double oracle of one problem.
template <class T>
struct Oracle {
  std::vector<double> mean, var, bn;  // bn: BN(x) (+ z), before the ReLU
  std::vector<double> y;              // after the ReLU
  Oracle(const Geometry& g, const std::vector<T>& x, const std::vector<T>* z,
         const std::vector<T>& gamma, const std::vector<T>& beta, double eps) {
    const auto C = static_cast<std::size_t>(g.channels);
    const double M = static_cast<double>(g.count_per_channel());
    mean.assign(C, 0);
    var.assign(C, 0);
    bn.assign(x.size(), 0);
    for (std::int64_t c = 0; c < g.channels; ++c) {
      double s = 0;
      for (std::int64_t o = 0; o < g.outer; ++o)
        for (std::int64_t i = 0; i < g.inner; ++i) s += static_cast<double>(x[index(g, o, c, i)]);
      mean[c] = s / M;
      double q = 0;
      for (std::int64_t o = 0; o < g.outer; ++o)
        for (std::int64_t i = 0; i < g.inner; ++i) {
          const double d = static_cast<double>(x[index(g, o, c, i)]) - mean[c];
          q += d * d;
        }
      var[c] = q / M;
      const double a = static_cast<double>(gamma[c]) / std::sqrt(var[c] + eps);
      for (std::int64_t o = 0; o < g.outer; ++o)
        for (std::int64_t i = 0; i < g.inner; ++i) {
          const std::size_t at = index(g, o, c, i);
          bn[at] = (static_cast<double>(x[at]) - mean[c]) * a + static_cast<double>(beta[c]);
          if (z != nullptr) bn[at] += static_cast<double>((*z)[at]);
        }
    }
    y.resize(bn.size());
    for (std::size_t j = 0; j < bn.size(); ++j) y[j] = std::max(bn[j], 0.0);
  }
};

// dx of batch norm for the (already masked) gradient gm, in double, with the given statistics.
template <class T>
std::vector<double> bn_backward(const Geometry& g, const std::vector<T>& x,
                                const std::vector<T>& gm, const std::vector<T>& gamma,
                                const std::vector<T>& mean, const std::vector<T>& var, double eps,
                                std::vector<double>& dgamma, std::vector<double>& dbeta) {
  const double M = static_cast<double>(g.count_per_channel());
  std::vector<double> dx(x.size());
  dgamma.assign(static_cast<std::size_t>(g.channels), 0);
  dbeta.assign(static_cast<std::size_t>(g.channels), 0);
  for (std::int64_t c = 0; c < g.channels; ++c) {
    const double invstd = 1 / std::sqrt(static_cast<double>(var[c]) + eps);
    const double m = static_cast<double>(mean[c]);
    for (std::int64_t o = 0; o < g.outer; ++o)
      for (std::int64_t i = 0; i < g.inner; ++i) {
        const std::size_t at = index(g, o, c, i);
        dbeta[c] += static_cast<double>(gm[at]);
        dgamma[c] += static_cast<double>(gm[at]) * (static_cast<double>(x[at]) - m) * invstd;
      }
    const double a = static_cast<double>(gamma[c]) * invstd;
    for (std::int64_t o = 0; o < g.outer; ++o)
      for (std::int64_t i = 0; i < g.inner; ++i) {
        const std::size_t at = index(g, o, c, i);
        const double xhat = (static_cast<double>(x[at]) - m) * invstd;
        dx[at] = a * (static_cast<double>(gm[at]) - dbeta[c] / M - xhat * dgamma[c] / M);
      }
  }
  return dx;
}

template <class T>
double ulp() {
  // Double inputs accumulate in double like the oracle (off by ~sqrt(M) ulps): widen for double.
  return std::numeric_limits<T>::epsilon() * (std::is_same_v<T, double> ? 256 : 1);
}

// |got - want| <= ulps * ulp(T) * (max |want| over the tensor + 1).
template <class T>
void expect_close(const std::vector<T>& got, const std::vector<double>& want, double ulps,
                  const char* what) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 1;
  for (const double w : want) scale = std::max(scale, std::abs(w));
  const double tol = ulps * ulp<T>() * scale;
  int failures = 0;
  for (std::size_t j = 0; j < got.size() && failures < 5; ++j) {
    if (!(std::abs(static_cast<double>(got[j]) - want[j]) <= tol)) {
      ADD_FAILURE() << what << "[" << j << "] = " << got[j] << ", oracle " << want[j]
                    << " (tolerance " << tol << ")";
      ++failures;
    }
  }
}

template <class T>
struct Data {
  Geometry g;
  std::vector<T> x, z, dy, gamma, beta;
  T eps = static_cast<T>(1e-3);
  explicit Data(Geometry geometry, unsigned seed) : g(geometry) {
    const auto n = static_cast<std::size_t>(g.size());
    const auto C = static_cast<std::size_t>(g.channels);
    x = random_vector<T>(n, 2.0, 3.0, seed);
    z = random_vector<T>(n, 0.5, 0.5, seed + 1);
    dy = random_vector<T>(n, 0.0, 1.0, seed + 2);
    gamma = random_vector<T>(C, 1.0, 0.2, seed + 3);
    beta = random_vector<T>(C, 1.0, 0.1, seed + 4);
  }
};

const std::vector<Geometry> kGeometries = {{4, 1, 81},   {36, 9, 1},    {5, 17, 33}, {6, 257, 1},
                                           {64, 100, 1}, {3, 33, 4097}, {700, 67, 1}};

template <class T>
void expect_few_zeros(const std::vector<T>& y) {
  const auto zeros = static_cast<double>(std::count(y.begin(), y.end(), T(0)));
  EXPECT_GT(zeros, 0) << "ReLU never active: the test data do not exercise it";
  EXPECT_LT(zeros / static_cast<double>(y.size()), 0.3) << "degenerate: mostly zeros";
}

template <class T>
void relu_forward_and_backward(const std::string& kernel) {
  const ScopedKernel forced(kernel);
  unsigned seed = 10;
  for (const Geometry& g : kGeometries) {
    SCOPED_TRACE(testing::Message() << kernel << " geometry {" << g.outer << "," << g.channels
                                    << "," << g.inner << "}");
    const Data<T> d(g, seed += 10);
    const auto C = static_cast<std::size_t>(g.channels);
    const Oracle<T> oracle(g, d.x, nullptr, d.gamma, d.beta, static_cast<double>(d.eps));
    std::vector<T> y(d.x.size(), T(-9)), mean(C, T(-9)), var(C, T(-9));
    std::vector<std::uint8_t> mask(d.x.size(), 7);
    forward_training_relu(std::span<const T>(d.x), std::span<T>(y), g, d.gamma, d.beta, d.eps, mean,
                          var, mask);
    expect_close(y, oracle.y, 4, "y");
    expect_few_zeros(y);
    for (std::size_t c = 0; c < C; ++c) {
      EXPECT_NEAR(static_cast<double>(mean[c]), oracle.mean[c],
                  2 * ulp<T>() * (std::abs(oracle.mean[c]) + 1));
      EXPECT_NEAR(static_cast<double>(var[c]), oracle.var[c], 2 * ulp<T>() * oracle.var[c]);
    }
    for (std::size_t j = 0; j < y.size(); ++j) ASSERT_EQ(mask[j], y[j] > 0 ? 1 : 0) << j;
    // Backward: with the mask and from y give the same bits; both match the oracle.
    std::vector<T> dx(d.x.size(), T(-9)), dgamma(C, T(-9)), dbeta(C, T(-9));
    backward_relu(std::span<const T>(d.x), std::span<const T>(d.dy), mask, g, d.gamma, mean, var,
                  d.eps, std::span<T>(dx), dgamma, dbeta);
    std::vector<T> dx2(d.x.size(), T(-9)), dgamma2(C, T(-9)), dbeta2(C, T(-9));
    backward_relu_from_y(std::span<const T>(d.x), std::span<const T>(y), std::span<const T>(d.dy),
                         g, d.gamma, mean, var, d.eps, std::span<T>(dx2), dgamma2, dbeta2);
    EXPECT_TRUE(dx == dx2);
    EXPECT_TRUE(dgamma == dgamma2);
    EXPECT_TRUE(dbeta == dbeta2);
    std::vector<T> gm(d.dy.size());
    for (std::size_t j = 0; j < gm.size(); ++j) gm[j] = mask[j] ? d.dy[j] : T(0);
    std::vector<double> want_dgamma, want_dbeta;
    const auto want_dx = bn_backward(g, d.x, gm, d.gamma, mean, var, static_cast<double>(d.eps),
                                     want_dgamma, want_dbeta);
    expect_close(dx, want_dx, 16, "dx");
    const double sum_scale = static_cast<double>(g.count_per_channel()) * 4;
    expect_close(dgamma, want_dgamma, sum_scale, "dgamma");
    expect_close(dbeta, want_dbeta, sum_scale, "dbeta");
  }
}

TEST(FusedRelu, ForwardAndBackwardMatchOracleFloat) {
  relu_forward_and_backward<float>("");
}
TEST(FusedRelu, ForwardAndBackwardMatchOracleDouble) {
  relu_forward_and_backward<double>("");
}
TEST(FusedRelu, ReferenceTwinMatchesOracleFloat) {
  relu_forward_and_backward<float>("reference");
}
TEST(FusedRelu, ReferenceTwinMatchesOracleDouble) {
  relu_forward_and_backward<double>("reference");
}

template <class T>
void add_relu(const std::string& kernel) {
  const ScopedKernel forced(kernel);
  unsigned seed = 500;
  for (const Geometry& g : kGeometries) {
    SCOPED_TRACE(testing::Message() << kernel << " geometry {" << g.outer << "," << g.channels
                                    << "," << g.inner << "}");
    const Data<T> d(g, seed += 10);
    const auto C = static_cast<std::size_t>(g.channels);
    const Oracle<T> oracle(g, d.x, &d.z, d.gamma, d.beta, static_cast<double>(d.eps));
    std::vector<T> y(d.x.size(), T(-9)), mean(C, T(-9)), var(C, T(-9));
    forward_training_add_relu(std::span<const T>(d.x), std::span<const T>(d.z), std::span<T>(y), g,
                              d.gamma, d.beta, d.eps, mean, var);
    expect_close(y, oracle.y, 6, "y");
    expect_few_zeros(y);
    std::vector<T> dx(d.x.size(), T(-9)), dz(d.x.size(), T(-9)), dgamma(C, T(-9)), dbeta(C, T(-9));
    backward_add_relu(std::span<const T>(d.x), std::span<const T>(y), std::span<const T>(d.dy), g,
                      d.gamma, mean, var, d.eps, std::span<T>(dx), std::span<T>(dz), dgamma, dbeta);
    for (std::size_t j = 0; j < dz.size(); ++j) ASSERT_EQ(dz[j], y[j] > 0 ? d.dy[j] : T(0)) << j;
    std::vector<double> want_dgamma, want_dbeta;
    const auto want_dx = bn_backward(g, d.x, dz, d.gamma, mean, var, static_cast<double>(d.eps),
                                     want_dgamma, want_dbeta);
    expect_close(dx, want_dx, 16, "dx");
    const double sum_scale = static_cast<double>(g.count_per_channel()) * 4;
    expect_close(dgamma, want_dgamma, sum_scale, "dgamma");
    expect_close(dbeta, want_dbeta, sum_scale, "dbeta");
  }
}

TEST(FusedAddRelu, ForwardAndBackwardMatchOracleFloat) {
  add_relu<float>("");
}
TEST(FusedAddRelu, ForwardAndBackwardMatchOracleDouble) {
  add_relu<double>("");
}
TEST(FusedAddRelu, ReferenceTwinMatchesOracleFloat) {
  add_relu<float>("reference");
}
TEST(FusedAddRelu, ReferenceTwinMatchesOracleDouble) {
  add_relu<double>("reference");
}

TEST(FusedRelu, InferenceMatchesOracle) {
  for (const Geometry& g : kGeometries) {
    const Data<float> d(g, 77);
    const auto C = static_cast<std::size_t>(g.channels);
    const auto mean = random_vector<float>(C, 2.0, 0.5, 5);
    const auto var = random_vector<float>(C, 9.0, 1.0, 6);
    std::vector<float> y(d.x.size(), -9.0f);
    forward_inference_relu(std::span<const float>(d.x), std::span<float>(y), g, d.gamma, d.beta,
                           mean, var, d.eps);
    std::vector<double> want(d.x.size());
    for (std::int64_t o = 0; o < g.outer; ++o)
      for (std::int64_t c = 0; c < g.channels; ++c)
        for (std::int64_t i = 0; i < g.inner; ++i) {
          const std::size_t at = index(g, o, c, i);
          const double a = static_cast<double>(d.gamma[c]) /
                           std::sqrt(static_cast<double>(var[c]) + static_cast<double>(d.eps));
          want[at] =
              std::max(0.0, (static_cast<double>(d.x[at]) - static_cast<double>(mean[c])) * a +
                                static_cast<double>(d.beta[c]));
        }
    expect_close(y, want, 4, "y");
    expect_few_zeros(y);
  }
}

// In place (y over x, y over z, dx over dy, dz over dy) gives the out-of-place bits, and the
// bits do not depend on the thread count.
TEST(Fused, InPlaceAndThreadCountsGiveTheSameBits) {
  const int previous = omp_get_max_threads();
  for (const Geometry& g : {Geometry{3, 33, 4097}, Geometry{700, 67, 1}}) {
    const Data<float> d(g, 99);
    const auto C = static_cast<std::size_t>(g.channels);
    std::vector<float> mean(C), var(C), y_first, dx_first;
    for (const int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      std::vector<float> y(d.x.size());
      forward_training_add_relu(std::span<const float>(d.x), std::span<const float>(d.z),
                                std::span<float>(y), g, d.gamma, d.beta, d.eps, mean, var);
      std::vector<float> y_over_x = d.x;
      forward_training_add_relu(std::span<const float>(y_over_x), std::span<const float>(d.z),
                                std::span<float>(y_over_x), g, d.gamma, d.beta, d.eps, mean, var);
      std::vector<float> y_over_z = d.z;
      forward_training_add_relu(std::span<const float>(d.x), std::span<const float>(y_over_z),
                                std::span<float>(y_over_z), g, d.gamma, d.beta, d.eps, mean, var);
      EXPECT_TRUE(y == y_over_x);
      EXPECT_TRUE(y == y_over_z);
      std::vector<float> dx(d.x.size()), dz(d.x.size());
      backward_add_relu(std::span<const float>(d.x), std::span<const float>(y),
                        std::span<const float>(d.dy), g, d.gamma, mean, var, d.eps,
                        std::span<float>(dx), std::span<float>(dz), {}, {});
      std::vector<float> dz_over_dy = d.dy, dx2(d.x.size());
      backward_add_relu(std::span<const float>(d.x), std::span<const float>(y),
                        std::span<const float>(dz_over_dy), g, d.gamma, mean, var, d.eps,
                        std::span<float>(dx2), std::span<float>(dz_over_dy), {}, {});
      EXPECT_TRUE(dx == dx2);
      EXPECT_TRUE(dz == dz_over_dy);
      std::vector<float> dx_over_dy = d.dy;
      backward_relu_from_y(std::span<const float>(d.x), std::span<const float>(y),
                           std::span<const float>(dx_over_dy), g, d.gamma, mean, var, d.eps,
                           std::span<float>(dx_over_dy), {}, {});
      std::vector<float> dx3(d.x.size());
      backward_relu_from_y(std::span<const float>(d.x), std::span<const float>(y),
                           std::span<const float>(d.dy), g, d.gamma, mean, var, d.eps,
                           std::span<float>(dx3), {}, {});
      EXPECT_TRUE(dx3 == dx_over_dy);
      if (threads == 1) {
        y_first = y;
        dx_first = dx;
      } else {
        EXPECT_TRUE(y == y_first) << threads << " threads";
        EXPECT_TRUE(dx == dx_first) << threads << " threads";
      }
    }
  }
  omp_set_num_threads(previous);
}

template <class F>
void expect_error_naming(F&& f, const std::string& word) {
  try {
    f();
    ADD_FAILURE() << "expected bnorm::Error naming " << word;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
  }
}

TEST(Fused, ArgumentChecks) {
  const Geometry g{4, 3, 5};
  const Data<float> d(g, 3);
  std::vector<float> y(d.x.size()), mean(3), var(3), dx(d.x.size()), dz(d.x.size());
  std::vector<std::uint8_t> short_mask(d.x.size() - 1);
  expect_error_naming(
      [&] {
        forward_training_relu(std::span<const float>(d.x), std::span<float>(y), g, d.gamma, d.beta,
                              d.eps, mean, var, short_mask);
      },
      "mask");
  expect_error_naming(
      [&] {
        backward_relu(std::span<const float>(d.x), std::span<const float>(d.dy), short_mask, g,
                      d.gamma, mean, var, d.eps, std::span<float>(dx), {}, {});
      },
      "mask");
  const std::vector<float> short_z(d.x.size() - 2);
  expect_error_naming(
      [&] {
        forward_training_add_relu(std::span<const float>(d.x), std::span<const float>(short_z),
                                  std::span<float>(y), g, d.gamma, d.beta, d.eps, mean, var);
      },
      "z");
  expect_error_naming(
      [&] {
        backward_add_relu(std::span<const float>(d.x), std::span<const float>(y),
                          std::span<const float>(d.dy), g, d.gamma, mean, var, d.eps,
                          std::span<float>(dx), std::span<float>(dx), {}, {});
      },
      "dz");
  expect_error_naming(
      [&] {
        backward_relu_from_y(std::span<const float>(d.x), std::span<const float>(short_z),
                             std::span<const float>(d.dy), g, d.gamma, mean, var, d.eps,
                             std::span<float>(dx), {}, {});
      },
      "y");
  const Geometry one{1, 3, 1};
  std::vector<float> x1(3), y1(3);
  expect_error_naming(
      [&] {
        forward_training_relu(std::span<const float>(x1), std::span<float>(y1), one, {}, {}, 1e-3f,
                              mean, var, {});
      },
      "more than 1 value per channel");
}

}  // namespace
}  // namespace bnorm
