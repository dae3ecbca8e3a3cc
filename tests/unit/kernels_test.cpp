// Every registered kernel against the reference on the problem lists, for float and double:
// statistics, y, dx, dgamma, dbeta; in place equal to out of place; any thread count bitwise
// equal; NCHW vs NHWC vs (N,C) parity. BNORM_KERNEL and set_kernel choose the implementation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bnorm/error.hpp"
#include "bnorm/functional.hpp"
#include "bnorm/fused.hpp"
#include "bnorm/kernels.hpp"
#include "bnorm/phases.hpp"
#include "support/problems.hpp"
#include "support/support.hpp"

namespace bnorm {
namespace {

using test::bitwise_equal;
using test::Problem;
using test::ScopedThreads;

// Everything forward_training + backward produce for one problem.
template <class T>
struct Result {
  std::vector<T> y, mean, var, dx, dgamma, dbeta;
  // The double statistics and sums of the phases (channel_moments, backward_sums): count, mean
  // and M2, then sum dy and sum dy * x_hat, per channel. The outputs above are rounded from
  // them and can agree where these still differ in their last bits (a merge order that depends
  // on the thread count, say).
  std::vector<double> phases;
};

template <class T>
Result<T> run(const Problem& p, const std::string& kernel, int threads, bool in_place,
              std::uint64_t seed = 1) {
  const Geometry g = p.geometry();
  const ScopedKernel scoped(kernel);
  const ScopedThreads scoped_threads(threads);
  const auto x = test::gaussian<T>(g, seed);
  const auto dy = test::uniform<T>(g.size(), seed + 1);
  const auto gamma = test::uniform<T>(g.channels, seed + 2, 0.5, 1.5);
  const auto beta = test::uniform<T>(g.channels, seed + 3);
  Result<T> r;
  // Outputs pre-filled with junk: they must be assigned, not accumulated.
  r.mean.assign(g.channels, T(123));
  r.var.assign(g.channels, T(-7));
  r.dgamma.assign(g.channels, T(8));
  r.dbeta.assign(g.channels, T(9));
  if (in_place) {
    r.y = x;
    forward_training(std::span<const T>(r.y), std::span<T>(r.y), g, gamma, beta, T(1e-3), r.mean,
                     r.var);
    r.dx = dy;
    backward(std::span<const T>(x), std::span<const T>(r.dx), g, gamma, r.mean, r.var, T(1e-3),
             std::span<T>(r.dx), r.dgamma, r.dbeta);
  } else {
    r.y.assign(g.size(), T(42));
    forward_training(std::span<const T>(x), std::span<T>(r.y), g, gamma, beta, T(1e-3), r.mean,
                     r.var);
    r.dx.assign(g.size(), T(42));
    backward(std::span<const T>(x), std::span<const T>(dy), g, gamma, r.mean, r.var, T(1e-3),
             std::span<T>(r.dx), r.dgamma, r.dbeta);
  }
  std::vector<Moments> moments(g.channels);
  channel_moments(std::span<const T>(x), g, moments);
  std::vector<double> sum_dy(g.channels), sum_dy_xhat(g.channels);
  backward_sums(std::span<const T>(x), std::span<const T>(dy), g, std::span<const T>(r.mean),
                std::span<const T>(r.var), 1e-3, sum_dy, sum_dy_xhat);
  for (const Moments& m : moments) r.phases.insert(r.phases.end(), {m.count, m.mean, m.m2});
  r.phases.insert(r.phases.end(), sum_dy.begin(), sum_dy.end());
  r.phases.insert(r.phases.end(), sum_dy_xhat.begin(), sum_dy_xhat.end());
  return r;
}

std::vector<Problem> all_problems() {
  auto problems = test::load_problems("odd_shapes.txt");
  const auto resnet = test::load_problems("resnet50.txt");
  problems.insert(problems.end(), resnet.begin(), resnet.end());
  return problems;
}

std::vector<std::string> fast_kernels() {
  auto names = kernel_names();
  names.erase(std::remove(names.begin(), names.end(), "reference"), names.end());
  return names;
}

bool applies(const std::string& kernel, const Geometry& g) {
  return test::kernel_applies(kernel, g);
}

// Both sides accumulate in double, in different orders. Rounded to float the results agree to
// an ulp or two; kept in double they differ by the accumulation error, which scales with the sum
// of the magnitudes of the terms (sum_abs), not with the (possibly cancelled) result.
template <class T>
double sum_tolerance(double ref, double sum_abs) {
  const double accumulation = sum_abs * 0x1p-44;
  return 4 * static_cast<double>(test::ulp(static_cast<T>(std::max(1.0, std::abs(ref))))) +
         (sizeof(T) == sizeof(double) ? accumulation : 0.0);
}
// y and dx in ulp of their magnitude: 4 for float (the accuracy target); in double the statistics'
// accumulation order moves them by up to ~2^-44 relative, so the bound is 2^-44 relative there.
template <class T>
constexpr double output_ulps() {
  return sizeof(T) == sizeof(float) ? 4.0 : 512.0;
}

template <class T>
void expect_matches_reference(const Problem& p, const std::string& kernel) {
  const Geometry g = p.geometry();
  const auto fast = run<T>(p, kernel, 2, false);
  const auto ref = run<T>(p, "reference", 1, false);
  const std::string what = kernel + " on " + p.name();
  const auto x = test::gaussian<T>(g, 1);
  const auto dy = test::uniform<T>(g.size(), 2);
  const auto gamma = test::uniform<T>(g.channels, 3, 0.5, 1.5);
  const double M = static_cast<double>(g.count_per_channel());
  // dx = a * (dy - mean(dy) - x_hat * mean(dy * x_hat)) is a difference of terms of size
  // |a| * (max|dy| + |mean dy| + max|x_hat| * |mean(dy x_hat)|): its rounding scales with them.
  std::vector<double> dx_scale(g.channels), y_scale(g.channels);
  for (std::int64_t c = 0; c < g.channels; ++c) {
    const double invstd = 1 / std::sqrt(static_cast<double>(ref.var[c]) + 1e-3);
    double max_dy = 0, max_xhat = 0, sum_abs_dy = 0, sum_abs_dy_xhat = 0, max_x = 0;
    for (std::int64_t j = 0; j < g.count_per_channel(); ++j) {
      const double d = static_cast<double>(dy[test::at(g, c, j)]);
      const double xhat = (static_cast<double>(x[test::at(g, c, j)]) - ref.mean[c]) * invstd;
      max_dy = std::max(max_dy, std::abs(d));
      max_xhat = std::max(max_xhat, std::abs(xhat));
      max_x = std::max(max_x, std::abs(static_cast<double>(x[test::at(g, c, j)])));
      sum_abs_dy += std::abs(d);
      sum_abs_dy_xhat += std::abs(d * xhat);
    }
    const double a = std::abs(gamma[c] * invstd);
    dx_scale[c] =
        a * (max_dy + std::abs(ref.dbeta[c]) / M + max_xhat * std::abs(ref.dgamma[c]) / M);
    y_scale[c] = a * max_x;  // (x - mean) * a: x's own rounding scales with |x|, not |x - mean|
    // In double the statistics differ by the accumulation order: 2^-40 relative to the scale.
    const double stat_rel = sizeof(T) == sizeof(double) ? 0x1p-40 : 0.0;
    EXPECT_NEAR(fast.mean[c], ref.mean[c],
                2 * test::ulp(std::max(std::abs(ref.mean[c]), T(1e-3))) + stat_rel * max_x)
        << what << " mean, channel " << c;
    EXPECT_NEAR(fast.var[c], ref.var[c], 2 * test::ulp(ref.var[c]) + stat_rel * ref.var[c])
        << what << " variance, channel " << c;
    EXPECT_NEAR(fast.dbeta[c], ref.dbeta[c], sum_tolerance<T>(ref.dbeta[c], sum_abs_dy))
        << what << " dbeta, channel " << c;
    // dgamma = invstd * sum dy * (x - mean) also moves with the mean: by |sum dy| * invstd * dmean.
    EXPECT_NEAR(fast.dgamma[c], ref.dgamma[c],
                sum_tolerance<T>(ref.dgamma[c], sum_abs_dy_xhat) +
                    std::abs(ref.dbeta[c]) * invstd * stat_rel * max_x)
        << what << " dgamma, channel " << c;
  }
  test::expect_close_per_channel(g, fast.y, ref.y, output_ulps<T>(), what + " y",
                                 sizeof(T) == 8 ? y_scale : std::vector<double>{});
  test::expect_close_per_channel(g, fast.dx, ref.dx, 2 * output_ulps<T>(), what + " dx", dx_scale);
}

TEST(Kernels, RegistryListsReferenceLast) {
  const auto names = kernel_names();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.back(), "reference");
  EXPECT_GE(names.size(), 3u);
}

TEST(Kernels, EveryKernelMatchesTheReferenceOnEveryProblem) {
  for (const auto& kernel : fast_kernels()) {
    int covered = 0;
    for (const auto& p : all_problems()) {
      if (!applies(kernel, p.geometry())) continue;
      ++covered;
      expect_matches_reference<float>(p, kernel);
      expect_matches_reference<double>(p, kernel);
    }
    EXPECT_GT(covered, 5) << kernel << " applies to too few problems to be tested";
  }
}

TEST(Kernels, InPlaceEqualsOutOfPlaceBitwise) {
  for (const auto& kernel : kernel_names()) {
    for (const auto& p : test::load_problems("odd_shapes.txt")) {
      if (!applies(kernel, p.geometry())) continue;
      const auto a = run<float>(p, kernel, 2, false);
      const auto b = run<float>(p, kernel, 2, true);
      EXPECT_TRUE(bitwise_equal(a.y, b.y)) << kernel << " y on " << p.name();
      EXPECT_TRUE(bitwise_equal(a.dx, b.dx)) << kernel << " dx on " << p.name();
      EXPECT_TRUE(bitwise_equal(a.mean, b.mean) && bitwise_equal(a.var, b.var)) << kernel;
    }
  }
}

TEST(Kernels, BitwiseIdenticalForAnyThreadCountAndRepeatedCalls) {
  for (const auto& kernel : fast_kernels()) {
    for (const auto& p : all_problems()) {
      if (!applies(kernel, p.geometry())) continue;
      const auto one = run<float>(p, kernel, 1, false);
      for (const int threads : {2, 3, 4, 7}) {
        const auto many = run<float>(p, kernel, threads, false);
        EXPECT_TRUE(bitwise_equal(one.mean, many.mean) && bitwise_equal(one.var, many.var) &&
                    bitwise_equal(one.y, many.y) && bitwise_equal(one.dx, many.dx) &&
                    bitwise_equal(one.dgamma, many.dgamma) &&
                    bitwise_equal(one.dbeta, many.dbeta) && bitwise_equal(one.phases, many.phases))
            << kernel << " on " << p.name() << " differs between 1 and " << threads << " threads";
      }
      const auto again = run<float>(p, kernel, 1, false);
      EXPECT_TRUE(bitwise_equal(one.y, again.y) && bitwise_equal(one.dx, again.dx)) << kernel;
    }
  }
}

// The same values as NCHW, NHWC and (N*H*W, C) give the same statistics and outputs.
TEST(Kernels, LayoutParity) {
  const std::int64_t N = 3, C = 5, H = 7, W = 9;
  const Geometry nchw = geometry_of({N, C, H, W}, 1);
  const Geometry nhwc = geometry_of({N, H, W, C}, -1);
  const Geometry nc = geometry_of({N * H * W, C}, 1);
  ASSERT_EQ(nhwc, nc);
  const auto x_nchw = test::gaussian<float>(nchw, 5, 100.0, 3.0);
  const auto dy_nchw = test::uniform<float>(nchw.size(), 6);
  // Transpose to channels last: logical index j of channel c is the same value in both.
  std::vector<float> x_nhwc(x_nchw.size()), dy_nhwc(x_nchw.size());
  for (std::int64_t c = 0; c < C; ++c) {
    for (std::int64_t j = 0; j < N * H * W; ++j) {
      x_nhwc[test::at(nhwc, c, j)] = x_nchw[test::at(nchw, c, j)];
      dy_nhwc[test::at(nhwc, c, j)] = dy_nchw[test::at(nchw, c, j)];
    }
  }
  for (const auto& kernel : kernel_names()) {
    const ScopedKernel scoped(kernel);
    if (!applies(kernel, nchw) || !applies(kernel, nhwc)) continue;
    std::vector<float> y1(x_nchw.size()), y2(x_nchw.size()), m1(C), v1(C), m2(C), v2(C);
    forward_training(x_nchw, y1, nchw, {}, {}, 1e-5f, m1, v1);
    forward_training(x_nhwc, y2, nhwc, {}, {}, 1e-5f, m2, v2);
    std::vector<float> dx1(x_nchw.size()), dx2(x_nchw.size()), dg1(C), dg2(C), db1(C), db2(C);
    backward(x_nchw, dy_nchw, nchw, {}, m1, v1, 1e-5f, dx1, dg1, db1);
    backward(x_nhwc, dy_nhwc, nhwc, {}, m2, v2, 1e-5f, dx2, dg2, db2);
    for (std::int64_t c = 0; c < C; ++c) {
      EXPECT_NEAR(m1[c], m2[c], test::ulp(m1[c])) << kernel;
      EXPECT_NEAR(v1[c], v2[c], 2 * test::ulp(v1[c])) << kernel;
      EXPECT_NEAR(dg1[c], dg2[c], 1e-4) << kernel;
      EXPECT_NEAR(db1[c], db2[c], 1e-4) << kernel;
      for (std::int64_t j = 0; j < N * H * W; ++j) {
        EXPECT_NEAR(y1[test::at(nchw, c, j)], y2[test::at(nhwc, c, j)], 4e-6f) << kernel;
        EXPECT_NEAR(dx1[test::at(nchw, c, j)], dx2[test::at(nhwc, c, j)], 1e-5f) << kernel;
      }
    }
  }
}

TEST(Kernels, ForcingAKernelByName) {
  const std::string initial = forced_kernel();  // BNORM_KERNEL, if the suite runs with it
  {
    const ScopedKernel automatic("");
    EXPECT_NE(kernel_for(Geometry{4, 3, 1}, false), "reference");
    EXPECT_NE(kernel_for(Geometry{4, 3, 7}, true), "reference");
  }
  {
    const ScopedKernel scoped("reference");
    EXPECT_EQ(forced_kernel(), "reference");
    EXPECT_EQ(kernel_for(Geometry{4, 3, 1}, false), "reference");
    EXPECT_EQ(kernel_for(Geometry{4, 3, 5}, true), "reference");
  }
  EXPECT_EQ(forced_kernel(), initial);
  EXPECT_THAT([] { set_kernel("fastest"); },
              ::testing::ThrowsMessage<Error>(::testing::AllOf(
                  ::testing::HasSubstr("'fastest'"), ::testing::HasSubstr("'reference'"))));
  {
    const ScopedKernel scoped("plain:channels_last");
    EXPECT_THAT(
        [] {
          (void)kernel_for(Geometry{4, 3, 5}, false);
        },
        ::testing::ThrowsMessage<Error>(
            ::testing::HasSubstr("kernel 'plain:channels_last' (forced by BNORM_KERNEL or "
                                 "set_kernel) does not apply")));
  }
}

// Outputs of 8 MiB and more are written with non-temporal stores, which need vector-aligned
// addresses: the stores before y's first aligned vector are regular ones (channels-first), and
// channels-last rows stream only when every row is aligned. The values must not depend on it:
// y at every float offset within a cache line is bitwise the same as y on a cache line (which
// streams), and that one matches the reference.
template <class T>
void expect_alignment_independent(const Geometry& g) {
  const std::string where = "geometry {" + std::to_string(g.outer) + ", " +
                            std::to_string(g.channels) + ", " + std::to_string(g.inner) + "}";
  ASSERT_GE(g.size() * static_cast<std::int64_t>(sizeof(T)), std::int64_t{8} << 20) << where;
  const auto x = test::gaussian<T>(g, 7);
  const auto dy = test::uniform<T>(g.size(), 8);
  const auto z = test::uniform<T>(g.size(), 9);
  const auto gamma = test::uniform<T>(g.channels, 10, 0.5, 1.5);
  const auto beta = test::uniform<T>(g.channels, 11);
  constexpr std::size_t kLine = 64 / sizeof(T);
  std::vector<T> buffer(static_cast<std::size_t>(g.size()) + 2 * kLine);
  const auto misalignment = reinterpret_cast<std::uintptr_t>(buffer.data()) % 64 / sizeof(T);
  const std::size_t aligned = (kLine - misalignment) % kLine;
  std::vector<T> mean(g.channels), var(g.channels), dgamma(g.channels), dbeta(g.channels);
  // out(offset) = the four outputs, concatenated, computed into buffer at aligned + offset.
  const auto outputs = [&](std::size_t offset) {
    const std::span<T> y(buffer.data() + aligned + offset, static_cast<std::size_t>(g.size()));
    std::vector<T> all;
    forward_training(std::span<const T>(x), y, g, gamma, beta, T(1e-3), mean, var);
    all.insert(all.end(), y.begin(), y.end());
    forward_inference(std::span<const T>(x), y, g, gamma, beta, mean, var, T(1e-3));
    all.insert(all.end(), y.begin(), y.end());
    forward_training_add_relu(std::span<const T>(x), std::span<const T>(z), y, g, gamma, beta,
                              T(1e-3), mean, var);
    all.insert(all.end(), y.begin(), y.end());
    backward(std::span<const T>(x), std::span<const T>(dy), g, gamma, mean, var, T(1e-3), y, dgamma,
             dbeta);
    all.insert(all.end(), y.begin(), y.end());
    return all;
  };
  const std::vector<T> streamed = outputs(0);
  for (std::size_t offset = 1; offset < kLine; offset += 3) {
    EXPECT_TRUE(bitwise_equal(outputs(offset), streamed)) << where << ", y offset " << offset;
  }
  // The streamed y and dx against the reference kernel.
  const ScopedKernel reference("reference");
  const std::vector<T> ref = outputs(0);
  const auto n = static_cast<std::size_t>(g.size());
  const auto part = [n](const std::vector<T>& v, std::size_t k) {
    return std::vector<T>(v.begin() + static_cast<std::ptrdiff_t>(k * n),
                          v.begin() + static_cast<std::ptrdiff_t>((k + 1) * n));
  };
  test::expect_close_per_channel(g, part(streamed, 0), part(ref, 0), output_ulps<T>(),
                                 where + " y");
  test::expect_close_per_channel(g, part(streamed, 1), part(ref, 1), output_ulps<T>(),
                                 where + " inference y");
}

TEST(Kernels, LargeOutputsAreTheSameAtAnyAlignment) {
  const ScopedThreads threads(2);
  expect_alignment_independent<float>(Geometry{4, 16, 33001});  // NCHW, odd runs
  expect_alignment_independent<float>(Geometry{33000, 64, 1});  // NHWC, rows of whole vectors
  expect_alignment_independent<float>(Geometry{8200, 260, 1});  // NHWC, rows with a tail
  expect_alignment_independent<double>(Geometry{2, 8, 66003});
}

}  // namespace
}  // namespace bnorm