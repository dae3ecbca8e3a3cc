// Golden fixtures from scikit-learn 1.2.1 (tests/golden/standard_scaler/make_golden.py):
// StandardScaler fitted and partial_fitted on float32 and float64 data with NaNs, constant and
// near-constant features, sample weights, with_mean/with_std off.
//
// What is compared bitwise, and why the rest is not:
//  - n_samples_seen_: always bitwise (counts, or sums of weights that are multiples of 1/8).
//  - transform and inverse_transform of a scaler restored from sklearn's mean_, var_ and
//    n_samples_seen_ (from_statistics): bitwise, with sklearn's scale_ reproduced bitwise from
//    var_ by the constant-feature rule. This is all of sklearn's transform arithmetic.
//  - mean_, var_, scale_ of the "exact" cases (dyadic data, power-of-two batches): bitwise.
//  - mean_, var_, scale_ otherwise: within the error bounds of the two algorithms. sklearn sums
//    rows in NumPy's order (and BLAS for weights) and merges batches through sums (mean * n);
//    bnorm sums chunks and merges (count, mean, M2) with Chan's formula. Both are backward
//    stable: each is the exact result for data perturbed by at most n eps relatively, so both
//    lie within the perturbation bounds of the exact values (first order, doubled):
//      |d mean| <= 4 n eps max|x|,  |d var| <= 4 (n eps max|x| std + (n eps max|x|)^2)
//    (n = rows seen, max|x| over the column; a merge of batches whose means differ by d loses
//    ~eps max|x| d in both, so the bound needs the max|x| std term, not just n eps var).
//    scale follows through sqrt. The constant-feature decision must agree (no case sits at
//    the bound). Measured: every difference is below 1% of its bound.
//  - transform of bnorm's own fit: within those bounds propagated through (x - mean) / scale,
//    plus 4 roundings of the output type.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <bnorm/safetensors.hpp>
#include <bnorm/standard_scaler.hpp>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

namespace bnorm {
namespace {

namespace st = safetensors;
const std::filesystem::path kGolden =
    std::filesystem::path(BNORM_TESTS_DIR) / "golden/standard_scaler";
constexpr double kEps = std::numeric_limits<double>::epsilon();

const char* const kCases[] = {"f64_fit",     "f32_fit",     "f64_partial_fit", "f32_partial_fit",
                              "f64_nan",     "f32_nan",     "f64_weighted",    "f32_weighted",
                              "f64_no_mean", "f32_no_mean", "f64_no_std",      "f32_no_std",
                              "f64_neither", "f32_neither", "f64_constant",    "f32_constant",
                              "f64_exact",   "f32_exact"};

struct Fixture {
  st::File file;
  [[nodiscard]] bool has(const std::string& name) const { return file.contains(name); }
  template <class T>
  [[nodiscard]] std::vector<T> get(const std::string& name) const {
    const auto it = file.tensors.find(name);
    if (it == file.tensors.end()) throw std::runtime_error(file.source + " lacks " + name);
    return it->second.values<T>(name);
  }
  [[nodiscard]] const std::vector<std::int64_t>& shape(const std::string& name) const {
    return file.tensors.at(name).shape;
  }
  [[nodiscard]] bool flag(const std::string& key) const { return file.metadata.at(key) == "1"; }
};

template <class T>
bool same_bits(T a, T b) {
  return (std::isnan(a) && std::isnan(b)) ||
         std::bit_cast<std::uint64_t>(static_cast<double>(a)) ==
             std::bit_cast<std::uint64_t>(static_cast<double>(b));
}

template <class T>
void expect_bitwise(std::span<const T> actual, const std::vector<T>& expected,
                    const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (!same_bits(actual[i], expected[i]) && bad++ < 5) {
      ADD_FAILURE() << what << "[" << i << "]: " << std::hexfloat << actual[i] << " vs sklearn "
                    << expected[i];
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

// Per column: rows seen (non-NaN) and the largest |x|, over all steps up to `step`.
template <class T>
void column_extent(const Fixture& f, int step, std::int64_t F, std::vector<double>& rows,
                   std::vector<double>& max_abs) {
  rows.assign(static_cast<std::size_t>(F), 0);
  max_abs.assign(static_cast<std::size_t>(F), 0);
  for (int k = 1; k <= step; ++k) {
    const auto x = f.get<T>("step" + std::to_string(k) + ".x");
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      if (std::isnan(v)) continue;
      rows[i % F] += 1;
      max_abs[i % F] = std::max(max_abs[i % F], std::abs(v));
    }
  }
}

template <class T>
void run_case(const std::string& name) {
  const Fixture f{st::load(kGolden / (name + ".safetensors"))};
  ASSERT_EQ(f.file.metadata.at("bnorm.golden_format"), "1");
  const bool with_mean = f.flag("with_mean"), with_std = f.flag("with_std");
  const bool weighted = f.flag("weighted"), exact = f.flag("exact");
  const int steps = std::stoi(f.file.metadata.at("steps"));
  const std::int64_t F = f.shape("step1.x").at(1);
  const auto Fs = static_cast<std::size_t>(F);
  SCOPED_TRACE(name + ": " + f.file.metadata.at("what"));

  StandardScaler scaler(with_mean, with_std);
  std::vector<double> rows, max_abs;
  std::vector<double> tol_mean(Fs), tol_var(Fs), tol_scale(Fs);
  for (int k = 1; k <= steps; ++k) {
    const std::string p = "step" + std::to_string(k) + ".";
    const auto x = f.get<T>(p + "x");
    const auto w = weighted ? f.get<T>(p + "sample_weight") : std::vector<T>{};
    if (k == 1) {
      scaler.fit(std::span<const T>(x), F, std::span<const T>(w));
    } else {
      scaler.partial_fit(std::span<const T>(x), F, std::span<const T>(w));
    }
    expect_bitwise<double>(scaler.n_samples_seen(), f.get<double>(p + "n_samples_seen"),
                           p + "n_samples_seen");
    ASSERT_EQ(!scaler.mean().empty(), f.has(p + "mean")) << p << "mean presence";
    ASSERT_EQ(!scaler.var().empty(), f.has(p + "var")) << p << "var presence";
    ASSERT_EQ(!scaler.scale().empty(), f.has(p + "scale")) << p << "scale presence";
    if (scaler.mean().empty()) continue;
    const auto mean = f.get<double>(p + "mean");
    const auto var = with_std ? f.get<double>(p + "var") : std::vector<double>(Fs, 0.0);
    const auto scale = with_std ? f.get<double>(p + "scale") : std::vector<double>(Fs, 1.0);
    if (exact) {
      expect_bitwise<double>(scaler.mean(), mean, p + "mean");
      if (with_std) expect_bitwise<double>(scaler.var(), var, p + "var");
      if (with_std) expect_bitwise<double>(scaler.scale(), scale, p + "scale");
      continue;
    }
    column_extent<T>(f, k, F, rows, max_abs);
    for (std::size_t c = 0; c < Fs; ++c) {
      SCOPED_TRACE(p + "feature " + std::to_string(c));
      if (rows[c] == 0) {  // no sample: sklearn's 0 / 0
        EXPECT_TRUE(std::isnan(scaler.mean()[c]) && std::isnan(mean[c]));
        if (with_std) {
          EXPECT_TRUE(std::isnan(scaler.var()[c]) && std::isnan(var[c]));
          EXPECT_TRUE(std::isnan(scaler.scale()[c]) && std::isnan(scale[c]));
        }
        tol_mean[c] = tol_var[c] = tol_scale[c] = 0;
        continue;
      }
      const double n = rows[c], m = max_abs[c];
      tol_mean[c] = 4 * n * kEps * m;
      tol_var[c] = 4 * (n * kEps * m * std::sqrt(var[c]) + (n * kEps * m) * (n * kEps * m));
      EXPECT_NEAR(scaler.mean()[c], mean[c], tol_mean[c]);
      if (!with_std) continue;
      EXPECT_NEAR(scaler.var()[c], var[c], tol_var[c]);
      const bool sk_constant =
          StandardScaler::is_constant_feature(var[c], mean[c], scaler.n_samples_seen()[c]);
      EXPECT_EQ(StandardScaler::is_constant_feature(scaler.var()[c], scaler.mean()[c],
                                                    scaler.n_samples_seen()[c]),
                sk_constant);
      if (sk_constant) {
        EXPECT_EQ(scaler.scale()[c], 1.0);
      }
      tol_scale[c] = scale[c] == 1.0 ? 0.0 : tol_var[c] / (2 * scale[c]) + 2 * kEps * scale[c];
      EXPECT_NEAR(scaler.scale()[c], scale[c], tol_scale[c]);
    }
  }

  // sklearn's transform arithmetic, bitwise, on sklearn's own statistics.
  const std::string last = "step" + std::to_string(steps) + ".";
  const auto sk_mean = f.has(last + "mean") ? f.get<double>(last + "mean") : std::vector<double>{};
  const auto sk_var = f.has(last + "var") ? f.get<double>(last + "var") : std::vector<double>{};
  const auto restored = StandardScaler::from_statistics(with_mean, with_std, sk_mean, sk_var,
                                                        f.get<double>(last + "n_samples_seen"));
  if (with_std) expect_bitwise<double>(restored.scale(), f.get<double>(last + "scale"), "scale_");
  const auto eval_x = f.get<T>("eval.x");
  const auto eval_y = f.get<T>("eval.y");
  expect_bitwise<T>(restored.transform(std::span<const T>(eval_x)), eval_y, "transform");
  expect_bitwise<T>(restored.inverse_transform(std::span<const T>(eval_y)), f.get<T>("eval.x_back"),
                    "inverse_transform");
  // In place (y aliases x) gives the same bits.
  std::vector<T> in_place = eval_x;
  restored.transform(std::span<const T>(in_place), std::span<T>(in_place));
  expect_bitwise<T>(in_place, eval_y, "transform in place");

  // bnorm's own fit transforms within the propagated bounds.
  const auto y = scaler.transform(std::span<const T>(eval_x));
  constexpr double ulp = std::numeric_limits<T>::epsilon();
  std::size_t bad = 0, zeros = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    const std::size_t c = i % Fs;
    const double e = eval_y[i];
    zeros += e == 0;
    if (std::isnan(e) || std::isnan(static_cast<double>(y[i]))) {
      bad += std::isnan(e) != std::isnan(static_cast<double>(y[i]));
      continue;
    }
    const double s = with_std ? scaler.scale()[c] : 1.0;
    const double tol = (with_mean ? tol_mean[c] : 0.0) / s + std::abs(e) * tol_scale[c] / s +
                       4 * ulp * std::abs(e) + std::numeric_limits<double>::min();
    if (!(std::abs(static_cast<double>(y[i]) - e) <= tol) && bad++ < 5) {
      ADD_FAILURE() << "transform[" << i << "]: " << y[i] << " vs sklearn " << e << " (tol " << tol
                    << ")";
    }
  }
  EXPECT_EQ(bad, 0u) << "transform of bnorm's fit";
  // Zero-trust: a comparison against mostly zeros proves little.
  EXPECT_LE(zeros * 10, y.size() * 3) << "eval.y is degenerate";
}

class StandardScalerGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(StandardScalerGolden, ReproducesScikitLearn) {
  const std::string name = GetParam();
  if (name.starts_with("f32")) {
    run_case<float>(name);
  } else {
    run_case<double>(name);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, StandardScalerGolden, ::testing::ValuesIn(kCases),
                         [](const auto& param_info) { return std::string(param_info.param); });

// The fixtures exist for every case above, and no fixture is left untested.
TEST(StandardScalerGolden, EveryFixtureIsListed) {
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kGolden)) {
    if (entry.path().extension() != ".safetensors") continue;
    ++files;
    const std::string stem = entry.path().stem().string();
    EXPECT_TRUE(
        std::any_of(std::begin(kCases), std::end(kCases), [&](const char* c) { return stem == c; }))
        << stem << " is not tested";
  }
  EXPECT_EQ(files, std::size(kCases));
}

}  // namespace
}  // namespace bnorm
