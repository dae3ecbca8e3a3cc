// The SIMD kernels (src/kernels/simd) against the reference kernels, on every Highway target this
// CPU runs: odd shapes (C = 1, 3, 17, 33, 257; inner = 1; sizes straddling leaf, group, tile and
// vector boundaries), in place and out of place, at 1, 2 and 3 threads, float and double; and
// bitwise determinism across thread counts. Each op is run through the public API with the
// kernel forced by name, so the fused paths (forward_training, backward) and the phases
// (channel_moments, normalize, backward_sums, backward_input) are both covered.
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

#include "bnorm/functional.hpp"
#include "bnorm/kernels.hpp"
#include "bnorm/phases.hpp"
#include "kernels/simd/simd.hpp"

namespace bnorm {
namespace {

using kernels::simd::force_target;
using kernels::simd::supported_targets;

struct Shape {
  std::int64_t outer, channels, inner;
};

// Odd shapes; the last ones straddle chunk boundaries (kLeafValues = 4096 values per leaf,
// kMaxGroups = 64 groups, 64-row tiles for 256-channel blocks) and are big enough for threads.
const std::vector<Shape> kShapes = {
    {4, 1, 81},  // (4,1,9,9)
    {36, 9, 1},  // (4,9,1,1) seen channels-last, and more rows
    {4, 9, 2},   // tiny inner
    {7, 3, 5},
    {5, 17, 33},
    {3, 33, 17},
    {2, 257, 7},
    {13, 1, 1},
    {11, 3, 1},
    {10, 17, 1},
    {9, 33, 1},
    {6, 257, 1},
    {64, 100, 1},
    {2, 3, 4097},    // two leaves and one
                     // value per channel
    {3, 2, 4095},    // leaves straddle runs
    {1, 2, 270001},  // more than kMaxGroups leaves: groups of several leaves; unfused (> 256 KiB)
    {4163, 257, 1},  // 65 tiles + 3 rows, a one-channel second block
    {129, 300, 1},   // two blocks of 256 + 44 channels
    {33, 67, 49},    // 7x7 maps, threads, fused per channel
};

template <class T>
std::vector<T> random_vector(std::size_t n, double mean, double stddev, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, stddev);
  std::vector<T> v(n);
  for (auto& e : v) e = static_cast<T>(dist(rng));
  return v;
}

// The per-channel maximum of |v| (values of channel c in logical order).
template <class T>
std::vector<double> channel_max_abs(const std::vector<T>& v, const Geometry& g) {
  std::vector<double> m(static_cast<std::size_t>(g.channels), 0.0);
  for (std::int64_t o = 0; o < g.outer; ++o) {
    for (std::int64_t c = 0; c < g.channels; ++c) {
      for (std::int64_t i = 0; i < g.inner; ++i) {
        const double a = std::abs(static_cast<double>(v[(o * g.channels + c) * g.inner + i]));
        m[c] = std::max(m[c], a);
      }
    }
  }
  return m;
}

// Tolerances are in ulps of T, for float. Double inputs accumulate in double like the reference,
// which is itself off by about sqrt(M) ulps of the mean, so for double the same figures are
// widened by kDoubleSlack (still about 1e-13 relative).
constexpr double kDoubleSlack = 256;
template <class T>
double unit_roundoff() {
  return std::numeric_limits<T>::epsilon() * (std::is_same_v<T, double> ? kDoubleSlack : 1.0);
}

// |got - want| <= ulps * eps(T) * scale[c] for every element.
template <class T>
void expect_close(const std::vector<T>& got, const std::vector<T>& want, const Geometry& g,
                  const std::vector<double>& scale, double ulps, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  const double eps = unit_roundoff<T>();
  int failures = 0;
  for (std::int64_t o = 0; o < g.outer && failures < 5; ++o) {
    for (std::int64_t c = 0; c < g.channels; ++c) {
      for (std::int64_t i = 0; i < g.inner; ++i) {
        const std::size_t at = static_cast<std::size_t>((o * g.channels + c) * g.inner + i);
        const double d = std::abs(static_cast<double>(got[at]) - static_cast<double>(want[at]));
        if (!(d <= ulps * eps * scale[c] + std::numeric_limits<double>::min())) {
          ADD_FAILURE() << what << " at (" << o << "," << c << "," << i << "): " << got[at]
                        << " vs reference " << want[at] << " (scale " << scale[c] << ")";
          if (++failures >= 5) return;
        }
      }
    }
  }
}

template <class T>
void expect_close_channels(const std::vector<T>& got, const std::vector<T>& want,
                           const std::vector<double>& scale, double ulps, const char* what) {
  const double eps = unit_roundoff<T>();
  for (std::size_t c = 0; c < got.size(); ++c) {
    EXPECT_LE(std::abs(static_cast<double>(got[c]) - static_cast<double>(want[c])),
              ulps * eps * scale[c])
        << what << " channel " << c << ": " << got[c] << " vs reference " << want[c];
  }
}

struct Threads {
  explicit Threads(int n) : previous(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~Threads() { omp_set_num_threads(previous); }
  int previous;
};

// Everything one problem produces, by one kernel.
template <class T>
struct Outputs {
  std::vector<T> y, mean, var, y_inference, dx, dgamma, dbeta;
  std::vector<Moments> moments;
  std::vector<T> y_phases, dx_phases;
  std::vector<double> sum_dy, sum_dy_xhat;
};

template <class T>
struct Problem {
  Geometry g;
  std::vector<T> x, dy, gamma, beta, mean_in, var_in;
  T eps = static_cast<T>(1e-3);
};

template <class T>
Problem<T> make_problem(const Shape& s, double mean, unsigned seed) {
  Problem<T> p;
  p.g = Geometry{s.outer, s.channels, s.inner};
  const auto n = static_cast<std::size_t>(p.g.size());
  const auto C = static_cast<std::size_t>(s.channels);
  p.x = random_vector<T>(n, mean, 1.0, seed);
  p.dy = random_vector<T>(n, 0.0, 1.0, seed + 1);
  p.gamma = random_vector<T>(C, 1.0, 0.3, seed + 2);
  p.beta = random_vector<T>(C, 0.0, 1.0, seed + 3);
  p.mean_in = random_vector<T>(C, mean, 0.5, seed + 4);
  p.var_in = random_vector<T>(C, 2.0, 0.2, seed + 5);
  return p;
}

template <class T>
Outputs<T> run_all(const std::string& kernel, const Problem<T>& p, bool in_place) {
  const ScopedKernel forced(kernel);
  const Geometry& g = p.g;
  const auto C = static_cast<std::size_t>(g.channels);
  Outputs<T> out;
  out.mean.assign(C, T(-7));
  out.var.assign(C, T(-7));
  if (in_place) {
    out.y = p.x;
    forward_training(std::span<const T>(out.y), std::span<T>(out.y), g, p.gamma, p.beta, p.eps,
                     out.mean, out.var);
  } else {
    out.y.assign(p.x.size(), T(-7));
    forward_training(std::span<const T>(p.x), std::span<T>(out.y), g, p.gamma, p.beta, p.eps,
                     out.mean, out.var);
  }
  out.y_inference = in_place ? p.x : std::vector<T>(p.x.size(), T(-7));
  forward_inference(in_place ? std::span<const T>(out.y_inference) : std::span<const T>(p.x),
                    std::span<T>(out.y_inference), g, p.gamma, p.beta, p.mean_in, p.var_in, p.eps);
  out.dgamma.assign(C, T(-7));
  out.dbeta.assign(C, T(-7));
  out.dx = in_place ? p.dy : std::vector<T>(p.x.size(), T(-7));
  backward(std::span<const T>(p.x),
           in_place ? std::span<const T>(out.dx) : std::span<const T>(p.dy), g, p.gamma, out.mean,
           out.var, p.eps, std::span<T>(out.dx), out.dgamma, out.dbeta);
  // The phases one by one (the unfused kernels).
  out.moments.assign(C, Moments{-1, -1, -1});
  channel_moments(std::span<const T>(p.x), g, out.moments);
  std::vector<double> mean_d(C), var_d(C);
  for (std::size_t c = 0; c < C; ++c) {
    mean_d[c] = static_cast<double>(p.mean_in[c]);
    var_d[c] = static_cast<double>(p.var_in[c]);
  }
  out.y_phases.assign(p.x.size(), T(-7));
  normalize(std::span<const T>(p.x), std::span<T>(out.y_phases), g, p.gamma, p.beta, mean_d, var_d,
            static_cast<double>(p.eps));
  out.sum_dy.assign(C, -7);
  out.sum_dy_xhat.assign(C, -7);
  backward_sums(std::span<const T>(p.x), std::span<const T>(p.dy), g, p.mean_in, p.var_in,
                static_cast<double>(p.eps), out.sum_dy, out.sum_dy_xhat);
  out.dx_phases.assign(p.x.size(), T(-7));
  backward_input(std::span<const T>(p.x), std::span<const T>(p.dy), g, p.gamma, p.mean_in, p.var_in,
                 static_cast<double>(p.eps), out.sum_dy, out.sum_dy_xhat,
                 static_cast<double>(g.count_per_channel()), std::span<T>(out.dx_phases));
  return out;
}

template <class T>
void compare(const Problem<T>& p, const Outputs<T>& got, const Outputs<T>& ref) {
  const Geometry& g = p.g;
  const auto C = static_cast<std::size_t>(g.channels);
  // Statistics: double accumulation in both, only the summation order differs.
  std::vector<double> stat_scale(C);
  for (std::size_t c = 0; c < C; ++c) {
    stat_scale[c] = std::abs(static_cast<double>(ref.mean[c])) + 1.0;
  }
  expect_close_channels(got.mean, ref.mean, stat_scale, 2, "batch_mean");
  expect_close_channels(got.var, ref.var, stat_scale, 2, "batch_variance");
  for (std::size_t c = 0; c < C; ++c) {
    EXPECT_EQ(got.moments[c].count, ref.moments[c].count);
    EXPECT_NEAR(got.moments[c].mean, ref.moments[c].mean, 1e-12 * stat_scale[c]) << "channel " << c;
    EXPECT_NEAR(got.moments[c].m2, ref.moments[c].m2, 1e-10 * (ref.moments[c].m2 + 1)) << c;
  }
  // y within 4 ulp of max |y_ref| per channel.
  expect_close(got.y, ref.y, g, channel_max_abs(ref.y, g), 4, "forward_training y");
  expect_close(got.y_inference, ref.y_inference, g, channel_max_abs(ref.y_inference, g), 4,
               "forward_inference y");
  expect_close(got.y_phases, ref.y_phases, g, channel_max_abs(ref.y_phases, g), 4, "normalize y");
  // dx in working precision: a few ulp of the largest term, |a * dy| bounds them all here.
  std::vector<double> dx_scale = channel_max_abs(ref.dx, g);
  const std::vector<double> dy_max = channel_max_abs(p.dy, g);
  for (std::size_t c = 0; c < C; ++c) {
    const double a =
        std::abs(static_cast<double>(p.gamma[c])) /
        std::sqrt(std::min(static_cast<double>(ref.var[c]), static_cast<double>(p.var_in[c])) +
                  static_cast<double>(p.eps));
    dx_scale[c] = std::max(dx_scale[c], a * dy_max[c]);
  }
  expect_close(got.dx, ref.dx, g, dx_scale, 8, "backward dx");
  expect_close(got.dx_phases, ref.dx_phases, g, dx_scale, 8, "backward_input dx");
  std::vector<double> sum_scale(C);
  for (std::size_t c = 0; c < C; ++c) {
    sum_scale[c] = dy_max[c] * static_cast<double>(g.count_per_channel()) * 8;
  }
  expect_close_channels(got.dbeta, ref.dbeta, sum_scale, 2, "dbeta");
  expect_close_channels(got.dgamma, ref.dgamma, sum_scale, 2, "dgamma");
  for (std::size_t c = 0; c < C; ++c) {
    EXPECT_NEAR(got.sum_dy[c], ref.sum_dy[c], 1e-12 * sum_scale[c]);
    EXPECT_NEAR(got.sum_dy_xhat[c], ref.sum_dy_xhat[c], 1e-12 * sum_scale[c]);
  }
}

template <class T>
void bitwise_equal(const Outputs<T>& a, const Outputs<T>& b) {
  EXPECT_TRUE(a.y == b.y);
  EXPECT_TRUE(a.mean == b.mean);
  EXPECT_TRUE(a.var == b.var);
  EXPECT_TRUE(a.y_inference == b.y_inference);
  EXPECT_TRUE(a.dx == b.dx);
  EXPECT_TRUE(a.dgamma == b.dgamma);
  EXPECT_TRUE(a.dbeta == b.dbeta);
  EXPECT_TRUE(a.y_phases == b.y_phases);
  EXPECT_TRUE(a.dx_phases == b.dx_phases);
  EXPECT_TRUE(a.sum_dy == b.sum_dy);
  EXPECT_TRUE(a.sum_dy_xhat == b.sum_dy_xhat);
  for (std::size_t c = 0; c < a.moments.size(); ++c) {
    EXPECT_EQ(a.moments[c].mean, b.moments[c].mean);
    EXPECT_EQ(a.moments[c].m2, b.moments[c].m2);
  }
}

std::string simd_kernel_for(const Geometry& g) {
  return g.inner == 1 ? "simd:channels_last" : "simd:channels_first";
}

// Restores the CPU's best target when a test ends, even on failure.
struct TargetScope {
  explicit TargetScope(std::int64_t bits) { force_target(bits); }
  ~TargetScope() { force_target(0); }
};

template <class T>
void check_every_target_shape_and_thread_count() {
  const auto targets = supported_targets();
  ASSERT_FALSE(targets.empty());
  unsigned seed = 1;
  for (const auto& target : targets) {
    const TargetScope scope(target.bits);
    for (const Shape& s : kShapes) {
      const Problem<T> p = make_problem<T>(s, 3.0, seed++);
      const std::string name = simd_kernel_for(p.g);
      const Outputs<T> ref = run_all<T>("reference", p, false);
      for (const bool in_place : {false, true}) {
        Outputs<T> first;
        for (const int threads : {1, 2, 3}) {
          SCOPED_TRACE(testing::Message()
                       << target.name << " " << name << " shape (" << s.outer << "," << s.channels
                       << "," << s.inner << ") " << (in_place ? "in place" : "out of place") << " "
                       << threads << " threads");
          const Threads scoped(threads);
          const Outputs<T> got = run_all<T>(name, p, in_place);
          compare(p, got, ref);
          if (threads == 1) {
            first = got;
          } else {
            bitwise_equal(first, got);
          }
        }
      }
    }
  }
}

TEST(Simd, AllTargetsShapesThreadsFloat) {
  check_every_target_shape_and_thread_count<float>();
}
TEST(Simd, AllTargetsShapesThreadsDouble) {
  check_every_target_shape_and_thread_count<double>();
}

// simd::scales (plan_normalize's per-channel gamma / sqrt(variance + eps)) gives invstd_of's
// values bitwise on every target, the fused channels-first paths computing them one at a time:
// any channel count (vector tails), gamma absent or given, variance + eps == 0, NaN and infinity.
template <class T>
void check_scales() {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> uniform(0.0, 4.0);
  for (const auto& target : supported_targets()) {
    force_target(target.bits);
    for (const std::size_t C : {1, 3, 7, 8, 9, 17, 100}) {
      for (const double epsilon : {0.0, 1e-3}) {
        std::vector<double> variance(C);
        std::vector<T> gamma(C);
        for (std::size_t c = 0; c < C; ++c) {
          variance[c] = uniform(rng);
          gamma[c] = static_cast<T>(uniform(rng) - 2.0);
        }
        variance[0] = 0.0;
        if (C > 2) variance[1] = std::numeric_limits<double>::quiet_NaN();
        if (C > 2) variance[2] = std::numeric_limits<double>::infinity();
        for (const bool with_gamma : {false, true}) {
          std::vector<double> scale(C, -1.0);
          kernels::simd::scales<T>(variance.data(), with_gamma ? gamma.data() : nullptr, epsilon,
                                   scale.data(), C);
          for (std::size_t c = 0; c < C; ++c) {
            const double v = variance[c] + epsilon;
            const double invstd = v == 0 ? 0.0 : 1.0 / std::sqrt(v);
            const double expected = (with_gamma ? static_cast<double>(gamma[c]) : 1.0) * invstd;
            if (std::isnan(expected)) {
              EXPECT_TRUE(std::isnan(scale[c])) << target.name << " C=" << C << " c=" << c;
            } else {
              EXPECT_EQ(scale[c], expected) << target.name << " C=" << C << " c=" << c;
            }
          }
        }
      }
    }
  }
  force_target(0);
}

TEST(Simd, ScalesAreBitwiseTheScalarOnesOnEveryTarget) {
  check_scales<float>();
  check_scales<double>();
}

TEST(Simd, TargetsIncludeTheBestAndAreDistinct) {
  const auto targets = supported_targets();
  ASSERT_FALSE(targets.empty());
  EXPECT_EQ(targets.front().name, kernels::simd::current_target());
  EXPECT_EQ(simd_target_name(), targets.front().name);  // the public name of the same target
  for (std::size_t i = 1; i < targets.size(); ++i) EXPECT_NE(targets[i].bits, targets[i - 1].bits);
}

TEST(Simd, RegisteredBeforePlainKernels) {
  const auto names = kernel_names();
  const auto at = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) - names.begin();
  };
  EXPECT_LT(at("simd:channels_last"), at("plain:channels_last"));
  EXPECT_LT(at("simd:channels_first"), at("plain:channels_first"));
  EXPECT_LT(at("simd:channels_first"), static_cast<std::ptrdiff_t>(names.size()));
  EXPECT_EQ(kernel_for(Geometry{8, 3, 1}, false), "simd:channels_last");
  EXPECT_EQ(kernel_for(Geometry{8, 3, 5}, true), "simd:channels_first");
}

// fp32 input N(m, 1): the variance within 1e-6 (relative) of the double reference up to m = 1e6,
// y within 4 ulp of max |y_ref| per channel up to m = 1e5 (the mean is subtracted as a hi + lo
// pair of floats, so the large mean does not cancel).
TEST(Simd, LargeMeansFloat) {
  for (const auto& target : supported_targets()) {
    const TargetScope scope(target.bits);
    for (const Shape& s : {Shape{16, 5, 1000}, Shape{3000, 7, 1}}) {
      for (const double m : {1e3, 1e5, 1e6}) {
        SCOPED_TRACE(testing::Message() << target.name << " mean " << m << " inner " << s.inner);
        const Problem<float> p = make_problem<float>(s, m, 11);
        const Outputs<float> ref = run_all<float>("reference", p, false);
        const Outputs<float> got = run_all<float>(simd_kernel_for(p.g), p, false);
        for (std::size_t c = 0; c < got.moments.size(); ++c) {
          EXPECT_LE(std::abs(got.moments[c].m2 - ref.moments[c].m2), 1e-6 * ref.moments[c].m2);
        }
        if (m <= 1e5) expect_close(got.y, ref.y, p.g, channel_max_abs(ref.y, p.g), 4, "y");
      }
    }
  }
}

// Constant channels (variance 0, epsilon 0): x_hat = 0, y = beta, dx = 0, never NaN.
TEST(Simd, ConstantChannelsGiveBetaAndZeroGradient) {
  for (const Shape& s : {Shape{8, 3, 50}, Shape{100, 19, 1}}) {
    const Geometry g{s.outer, s.channels, s.inner};
    const std::vector<float> x(static_cast<std::size_t>(g.size()), 2.5f);
    const std::vector<float> dy = random_vector<float>(x.size(), 0, 1, 3);
    const std::vector<float> beta =
        random_vector<float>(static_cast<std::size_t>(s.channels), 0, 1, 4);
    std::vector<float> y(x.size()), dx(x.size()), mean(beta.size()), var(beta.size());
    const ScopedKernel forced(simd_kernel_for(g));
    forward_training(std::span<const float>(x), std::span<float>(y), g, {}, beta, 0.0f, mean, var);
    backward(std::span<const float>(x), std::span<const float>(dy), g, {}, mean, var, 0.0f,
             std::span<float>(dx), {}, {});
    for (std::size_t j = 0; j < x.size(); ++j) {
      const auto c =
          static_cast<std::size_t>((static_cast<std::int64_t>(j) / s.inner) % s.channels);
      ASSERT_EQ(y[j], beta[c]);
      ASSERT_EQ(dx[j], 0.0f);
    }
  }
}

}  // namespace
}  // namespace bnorm
