// StandardScaler: fitting (local and synchronized), attributes, transform and its inverse.
// The arithmetic mirrors scikit-learn 1.2.1 (preprocessing/_data.py, utils/extmath.py) where it
// is observable: the constant-feature test, the transform's roundings, NaN handling.
#include "bnorm/standard_scaler.hpp"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "bnorm/error.hpp"
#include "preprocessing/masked_moments.hpp"

namespace bnorm {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// What a fit learned from checking its input.
struct FitInput {
  std::int64_t rows = 0;
  bool has_nan = false;
};

// Checks a batch given to (partial_)fit. Returns the problem as a message (empty when valid), so
// that a synchronized fit can report it to every rank instead of throwing before a collective.
template <class T>
std::string check_fit_input(std::string_view fn, std::span<const T> x, std::int64_t features,
                            std::span<const T> sample_weight, std::int64_t fitted_features,
                            bool allow_empty, FitInput& input) {
  if (features <= 0) return fmt::format("{}: features = {}; expected > 0", fn, features);
  if (fitted_features > 0 && features != fitted_features) {
    return fmt::format(
        "{}: features = {}; expected {} (the number of features this scaler was fitted on; "
        "call fit to start over)",
        fn, features, fitted_features);
  }
  const auto F = static_cast<std::size_t>(features);
  if (x.size() % F != 0) {
    return fmt::format(
        "{}: x has {} values; expected a multiple of features = {} (row-major "
        "n_samples x n_features)",
        fn, x.size(), features);
  }
  input.rows = static_cast<std::int64_t>(x.size() / F);
  if (input.rows == 0 && !allow_empty) {
    return fmt::format("{}: x has 0 rows; expected at least 1 sample", fn);
  }
  if (!sample_weight.empty()) {
    if (sample_weight.size() != x.size() / F) {
      return fmt::format("{}: sample_weight has {} values; expected {} (one per row) or none", fn,
                         sample_weight.size(), input.rows);
    }
    for (std::size_t r = 0; r < sample_weight.size(); ++r) {
      const double w = static_cast<double>(sample_weight[r]);
      if (!std::isfinite(w) || w < 0) {
        return fmt::format("{}: sample_weight[{}] = {}; expected a finite weight >= 0", fn, r, w);
      }
    }
  }
  for (std::size_t k = 0; k < x.size(); ++k) {
    const double v = static_cast<double>(x[k]);
    if (std::isinf(v)) {
      return fmt::format(
          "{}: x[row {}, feature {}] = {}; expected finite values (NaN is allowed: it is "
          "ignored by fit and kept by transform)",
          fn, k / F, k % F, v);
    }
    if (std::isnan(v)) input.has_nan = true;
  }
  return {};
}

// This process's moments of a checked batch.
template <class T>
std::vector<Moments> local_moments(std::span<const T> x, const FitInput& input,
                                   std::int64_t features, std::span<const T> sample_weight) {
  std::vector<Moments> m(static_cast<std::size_t>(features));
  if (input.rows == 0) return m;
  if (!input.has_nan && sample_weight.empty()) {
    // The library's exact moments: rows are the batch axis, features the channels.
    channel_moments(x, Geometry{input.rows, features, 1}, m);
  } else {
    preprocessing::masked_moments(x, input.rows, features, sample_weight, m);
  }
  return m;
}

// The synchronized part of a fit: every rank learns every rank's (features, status, rows), so
// that all of them throw together or continue together.
void agree_on_input(std::string_view fn, const Communicator& comm, std::int64_t features,
                    const std::string& problem, std::int64_t rows) {
  const int ranks = comm.size();
  const std::vector<double> mine{static_cast<double>(features), problem.empty() ? 0.0 : 1.0,
                                 static_cast<double>(rows)};
  std::vector<double> all(mine.size() * static_cast<std::size_t>(ranks));
  comm.allgather(mine, all);
  double total_rows = 0;
  for (int r = 0; r < ranks; ++r) {
    const double* h = &all[static_cast<std::size_t>(r) * mine.size()];
    if (h[1] != 0) {
      if (r == comm.rank()) throw Error(fmt::format("{} (rank {} of {})", problem, r, ranks));
      throw Error(
          fmt::format("{}: rank {}'s input was invalid (its error says why); expected "
                      "valid input on every rank",
                      fn, r));
    }
    if (h[0] != all[0]) {
      throw Error(
          fmt::format("{}: rank 0 has features = {}, rank {} has {}; expected the same "
                      "number of features on every rank",
                      fn, all[0], r, h[0]));
    }
    total_rows += h[2];
  }
  if (total_rows == 0) {
    throw Error(fmt::format("{}: every rank has 0 rows; expected at least 1 sample in all", fn));
  }
}

}  // namespace

StandardScaler::StandardScaler(bool with_mean, bool with_std)
    : with_mean_(with_mean), with_std_(with_std) {}

bool StandardScaler::is_constant_feature(double var, double mean, double n_samples_seen) {
  // sklearn.preprocessing._data._is_constant_feature, evaluated in NumPy's order (no FMA: the
  // library is compiled with -ffp-contract=off). The bound is Chan, Golub and LeVeque's error
  // bound of the two-pass variance: below it, var is indistinguishable from 0.
  constexpr double eps = std::numeric_limits<double>::epsilon();
  const double spread = n_samples_seen * eps * var;
  const double offset = n_samples_seen * mean * eps;
  return var <= spread + offset * offset;
}

std::span<const double> StandardScaler::mean() const {
  if (!with_mean_ && !with_std_) return {};
  return mean_;
}

void StandardScaler::set_scales() {
  scale_.clear();
  if (!with_std_) return;
  scale_.resize(var_.size());
  for (std::size_t f = 0; f < var_.size(); ++f) {
    scale_[f] =
        is_constant_feature(var_[f], mean_[f], n_samples_seen_[f]) ? 1.0 : std::sqrt(var_[f]);
  }
}

void StandardScaler::publish() {
  const std::size_t F = moments_.size();
  mean_.assign(F, kNaN);
  n_samples_seen_.assign(F, 0.0);
  var_.clear();
  if (with_std_) var_.assign(F, kNaN);
  for (std::size_t f = 0; f < F; ++f) {
    const Moments& m = moments_[f];
    n_samples_seen_[f] = m.count;
    if (m.count == 0) continue;  // sklearn: 0 / 0
    mean_[f] = m.mean;
    if (with_std_) var_[f] = m.m2 / m.count;
  }
  set_scales();
}

StandardScaler StandardScaler::from_statistics(bool with_mean, bool with_std,
                                               std::span<const double> mean,
                                               std::span<const double> var,
                                               std::span<const double> n_samples_seen) {
  constexpr std::string_view fn = "StandardScaler::from_statistics";
  const std::size_t F = n_samples_seen.size();
  if (F == 0) throw Error(fmt::format("{}: n_samples_seen is empty; expected one per feature", fn));
  const bool need_mean = with_mean || with_std;
  if (need_mean ? mean.size() != F : !mean.empty()) {
    throw Error(
        fmt::format("{}: mean has {} values; expected {}", fn, mean.size(), need_mean ? F : 0));
  }
  if (with_std ? var.size() != F : !var.empty()) {
    throw Error(fmt::format("{}: var has {} values; expected {} ({})", fn, var.size(),
                            with_std ? F : 0, with_std ? "one per feature" : "with_std = false"));
  }
  StandardScaler s(with_mean, with_std);
  s.features_ = static_cast<std::int64_t>(F);
  s.moments_.resize(F);
  for (std::size_t f = 0; f < F; ++f) {
    const double n = n_samples_seen[f];
    if (!std::isfinite(n) || n < 0) {
      throw Error(
          fmt::format("{}: n_samples_seen[{}] = {}; expected a finite count >= 0", fn, f, n));
    }
    const double m = need_mean ? mean[f] : 0.0;
    const double v = with_std ? var[f] : 0.0;
    if (n > 0 && (!std::isfinite(m) || !std::isfinite(v) || v < 0)) {
      throw Error(
          fmt::format("{}: feature {}: mean {}, var {}; expected finite values and "
                      "var >= 0 where n_samples_seen > 0",
                      fn, f, m, v));
    }
    s.moments_[f] = n > 0 ? Moments{n, m, v * n} : Moments{};
  }
  s.n_samples_seen_.assign(n_samples_seen.begin(), n_samples_seen.end());
  s.mean_ =
      need_mean ? std::vector<double>(mean.begin(), mean.end()) : std::vector<double>(F, kNaN);
  if (with_std) s.var_.assign(var.begin(), var.end());
  s.set_scales();
  return s;
}

template <class T>
StandardScaler& StandardScaler::partial_fit_impl(std::span<const T> x, std::int64_t features,
                                                 const Communicator* comm,
                                                 std::span<const T> sample_weight, bool refit) {
  const std::string fn = fmt::format("StandardScaler::{}{}", refit ? "fit" : "partial_fit",
                                     comm != nullptr ? " (synchronized)" : "");
  FitInput input;
  const std::string problem =
      check_fit_input(fn, x, features, sample_weight, features_, comm != nullptr, input);
  if (comm == nullptr && !problem.empty()) throw Error(problem);
  if (comm != nullptr) agree_on_input(fn, *comm, features, problem, input.rows);

  std::vector<Moments> batch = local_moments(x, input, features, sample_weight);
  if (comm != nullptr && comm->size() > 1) {
    static_assert(sizeof(Moments) == 3 * sizeof(double), "Moments travel as 3 doubles");
    const std::size_t F = batch.size();
    std::vector<Moments> gathered(F * static_cast<std::size_t>(comm->size()));
    comm->allgather(std::span<const double>(&batch[0].count, 3 * F),
                    std::span<double>(&gathered[0].count, 3 * gathered.size()));
    merge_ranks(gathered, comm->size(), batch);
  }
  if (moments_.empty()) moments_.resize(batch.size());
  for (std::size_t f = 0; f < batch.size(); ++f) moments_[f] = merge(moments_[f], batch[f]);
  features_ = features;
  publish();
  return *this;
}

StandardScaler& StandardScaler::partial_fit(std::span<const float> x, std::int64_t features,
                                            std::span<const float> sample_weight) {
  return partial_fit_impl(x, features, nullptr, sample_weight, false);
}
StandardScaler& StandardScaler::partial_fit(std::span<const double> x, std::int64_t features,
                                            std::span<const double> sample_weight) {
  return partial_fit_impl(x, features, nullptr, sample_weight, false);
}
StandardScaler& StandardScaler::partial_fit(std::span<const float> x, std::int64_t features,
                                            const Communicator& comm,
                                            std::span<const float> sample_weight) {
  return partial_fit_impl(x, features, &comm, sample_weight, false);
}
StandardScaler& StandardScaler::partial_fit(std::span<const double> x, std::int64_t features,
                                            const Communicator& comm,
                                            std::span<const double> sample_weight) {
  return partial_fit_impl(x, features, &comm, sample_weight, false);
}

// fit = partial_fit on a fresh scaler, assigned only on success (a failed fit changes nothing).
StandardScaler& StandardScaler::fit(std::span<const float> x, std::int64_t features,
                                    std::span<const float> sample_weight) {
  StandardScaler fresh(with_mean_, with_std_);
  fresh.partial_fit_impl(x, features, nullptr, sample_weight, true);
  return *this = std::move(fresh);
}
StandardScaler& StandardScaler::fit(std::span<const double> x, std::int64_t features,
                                    std::span<const double> sample_weight) {
  StandardScaler fresh(with_mean_, with_std_);
  fresh.partial_fit_impl(x, features, nullptr, sample_weight, true);
  return *this = std::move(fresh);
}
StandardScaler& StandardScaler::fit(std::span<const float> x, std::int64_t features,
                                    const Communicator& comm,
                                    std::span<const float> sample_weight) {
  StandardScaler fresh(with_mean_, with_std_);
  fresh.partial_fit_impl(x, features, &comm, sample_weight, true);
  return *this = std::move(fresh);
}
StandardScaler& StandardScaler::fit(std::span<const double> x, std::int64_t features,
                                    const Communicator& comm,
                                    std::span<const double> sample_weight) {
  StandardScaler fresh(with_mean_, with_std_);
  fresh.partial_fit_impl(x, features, &comm, sample_weight, true);
  return *this = std::move(fresh);
}

template <class T>
void StandardScaler::transform_impl(std::span<const T> x, std::span<T> y, bool inverse) const {
  const std::string_view fn =
      inverse ? "StandardScaler::inverse_transform" : "StandardScaler::transform";
  const std::string_view what = inverse ? "z" : "x";
  if (!fitted()) throw Error(fmt::format("{}: the scaler is not fitted; expected fit first", fn));
  const auto F = static_cast<std::size_t>(features_);
  if (x.size() % F != 0) {
    throw Error(fmt::format("{}: {} has {} values; expected a multiple of n_features_in = {}", fn,
                            what, x.size(), features_));
  }
  if (y.size() != x.size()) {
    throw Error(fmt::format("{}: the output has {} values; expected {} (the input's size)", fn,
                            y.size(), x.size()));
  }
  // Checked before anything is written: y may alias x.
  for (std::size_t k = 0; k < x.size(); ++k) {
    if (std::isinf(x[k])) {
      throw Error(fmt::format("{}: {}[row {}, feature {}] = {}; expected finite values or NaN", fn,
                              what, k / F, k % F, static_cast<double>(x[k])));
    }
  }
  // NumPy's in-place `X -= mean_` / `X /= scale_` with float64 statistics computes each step in
  // double and rounds it to X's type: one rounding per step for float, none extra for double.
  // One loop per configuration, so that each is branch-free and vectorizes.
  const std::size_t rows = x.size() / F;
  auto each = [&](auto step) {
    for (std::size_t r = 0; r < rows; ++r) {
      const T* in = x.data() + r * F;
      T* out = y.data() + r * F;
      for (std::size_t f = 0; f < F; ++f) out[f] = step(in[f], f);
    }
  };
  const double* m = mean_.data();
  const double* s = scale_.data();
  auto rounded = [](double v) { return static_cast<T>(v); };
  if (!inverse) {
    if (with_mean_ && with_std_) {
      each([&](T v, std::size_t f) {
        return rounded(static_cast<double>(rounded(static_cast<double>(v) - m[f])) / s[f]);
      });
    } else if (with_mean_) {
      each([&](T v, std::size_t f) { return rounded(static_cast<double>(v) - m[f]); });
    } else if (with_std_) {
      each([&](T v, std::size_t f) { return rounded(static_cast<double>(v) / s[f]); });
    } else {
      each([](T v, std::size_t) { return v; });
    }
  } else {
    if (with_mean_ && with_std_) {
      each([&](T v, std::size_t f) {
        return rounded(static_cast<double>(rounded(static_cast<double>(v) * s[f])) + m[f]);
      });
    } else if (with_mean_) {
      each([&](T v, std::size_t f) { return rounded(static_cast<double>(v) + m[f]); });
    } else if (with_std_) {
      each([&](T v, std::size_t f) { return rounded(static_cast<double>(v) * s[f]); });
    } else {
      each([](T v, std::size_t) { return v; });
    }
  }
}

void StandardScaler::transform(std::span<const float> x, std::span<float> y) const {
  transform_impl(x, y, false);
}
void StandardScaler::transform(std::span<const double> x, std::span<double> y) const {
  transform_impl(x, y, false);
}
std::vector<float> StandardScaler::transform(std::span<const float> x) const {
  std::vector<float> y(x.size());
  transform_impl(x, std::span<float>(y), false);
  return y;
}
std::vector<double> StandardScaler::transform(std::span<const double> x) const {
  std::vector<double> y(x.size());
  transform_impl(x, std::span<double>(y), false);
  return y;
}
void StandardScaler::inverse_transform(std::span<const float> z, std::span<float> x) const {
  transform_impl(z, x, true);
}
void StandardScaler::inverse_transform(std::span<const double> z, std::span<double> x) const {
  transform_impl(z, x, true);
}
std::vector<float> StandardScaler::inverse_transform(std::span<const float> z) const {
  std::vector<float> x(z.size());
  transform_impl(z, std::span<float>(x), true);
  return x;
}
std::vector<double> StandardScaler::inverse_transform(std::span<const double> z) const {
  std::vector<double> x(z.size());
  transform_impl(z, std::span<double>(x), true);
  return x;
}

}  // namespace bnorm
