// StandardScaler: scikit-learn's input standardization (sklearn.preprocessing.StandardScaler,
// the semantics of scikit-learn 1.2.1) on the library's exact moments.
//
//   z = (x - mean_) / scale_,  scale_ = sqrt(var_), or 1 where var_ is negligible
//
// Data is row-major (n_samples, n_features), given as a flat span plus the feature count.
// Statistics are per feature, in double (float64 accumulators for float input too, as sklearn):
//   - mean_ and var_ (ddof 0) from chunked two-pass moments merged by Chan's formula
//     (bnorm::channel_moments and bnorm::merge, phases.hpp); partial_fit merges each batch into
//     the running (count, mean, M2) the same way, so no E[x^2] - E[x]^2 cancellation anywhere;
//   - scale_ is 1 where sklearn's _is_constant_feature holds, bit for bit:
//       var <= n*eps*var + (n*mean*eps)^2,   eps = 2^-52, n = n_samples_seen_ of the feature;
//   - NaNs are ignored by fit (n_samples_seen_ then differs per feature) and kept by transform;
//     +-inf is rejected everywhere with bnorm::Error, as sklearn rejects it;
//   - transform is a true division; for float data each operation rounds to float as NumPy
//     does for float32 X with float64 statistics: z = f32(f32(x - mean) / scale).
// Beyond sklearn: a fit synchronized over a Communicator (every rank gets the statistics of the
// union of the ranks' data), and restoring a scaler from another's statistics (from_statistics).
// Folding a fitted scaler into the first Dense layer of the engine: bnorm/nn/standard_scaler.hpp.
// Deliberate differences from sklearn (docs/semantics.md): negative sample weights are rejected;
// a feature with no samples yet (all NaN) stays empty in the running moments, so a later
// partial_fit gives its true statistics (sklearn keeps NaN for ever); zero-row transforms are
// allowed; n_samples_seen() is always per feature (sklearn reduces equal counts to a scalar).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "bnorm/comm.hpp"
#include "bnorm/phases.hpp"

namespace bnorm {

class StandardScaler {
 public:
  // sklearn's constructor flags: subtract the mean, divide by the standard deviation.
  explicit StandardScaler(bool with_mean = true, bool with_std = true);

  // A fitted scaler from statistics computed elsewhere (e.g. sklearn's mean_, var_ and
  // n_samples_seen_), one value per feature; scale_ follows from them by sklearn's rule, so the
  // scaler transforms exactly as the one they came from. mean is required unless
  // !with_mean && !with_std; var is required iff with_std (else it must be empty);
  // n_samples_seen is required (>= 0, finite). Throws bnorm::Error naming the argument.
  static StandardScaler from_statistics(bool with_mean, bool with_std, std::span<const double> mean,
                                        std::span<const double> var,
                                        std::span<const double> n_samples_seen);

  // fit: forget everything, then partial_fit. partial_fit: merge the batch's statistics into the
  // running ones (Chan et al.'s parallel formula; sklearn's partial_fit).
  // Requires: features > 0; x.size() a multiple of features with at least one row; the same
  // features as earlier fits (partial_fit); x free of +-inf (NaN allowed, ignored);
  // sample_weight empty (all 1) or one finite weight >= 0 per row, in x's type as sklearn casts
  // it. With weights, n_samples_seen_ is the sum of the weights of the non-NaN values.
  // Throws bnorm::Error naming the argument, the value (and row/feature) and what was expected.
  StandardScaler& fit(std::span<const float> x, std::int64_t features,
                      std::span<const float> sample_weight = {});
  StandardScaler& fit(std::span<const double> x, std::int64_t features,
                      std::span<const double> sample_weight = {});
  StandardScaler& partial_fit(std::span<const float> x, std::int64_t features,
                              std::span<const float> sample_weight = {});
  StandardScaler& partial_fit(std::span<const double> x, std::int64_t features,
                              std::span<const double> sample_weight = {});

  // Synchronized: each rank passes its own rows; every rank ends with the statistics of the
  // union of all ranks' rows (per-rank moments all-gathered and merged in rank order, so the
  // result is identical on every rank). A rank may hold zero rows; the union may not. Every
  // rank must call with the same features. Invalid input on any rank throws bnorm::Error on
  // every rank (after the same collectives, so nothing hangs): the offending rank's message
  // says what was wrong, the others name that rank.
  StandardScaler& fit(std::span<const float> x, std::int64_t features, const Communicator& comm,
                      std::span<const float> sample_weight = {});
  StandardScaler& fit(std::span<const double> x, std::int64_t features, const Communicator& comm,
                      std::span<const double> sample_weight = {});
  StandardScaler& partial_fit(std::span<const float> x, std::int64_t features,
                              const Communicator& comm, std::span<const float> sample_weight = {});
  StandardScaler& partial_fit(std::span<const double> x, std::int64_t features,
                              const Communicator& comm, std::span<const double> sample_weight = {});

  // y = (x - mean_) / scale_ (each step only when enabled), y.size() == x.size(); y may alias x;
  // outputs assigned. NaN stays NaN. Requires: fitted, x.size() a multiple of n_features_in()
  // (zero rows allowed), no +-inf in x (checked before anything is written).
  void transform(std::span<const float> x, std::span<float> y) const;
  void transform(std::span<const double> x, std::span<double> y) const;
  [[nodiscard]] std::vector<float> transform(std::span<const float> x) const;
  [[nodiscard]] std::vector<double> transform(std::span<const double> x) const;
  // x = z * scale_ + mean_ (two roundings for float, as sklearn). Same requirements.
  void inverse_transform(std::span<const float> z, std::span<float> x) const;
  void inverse_transform(std::span<const double> z, std::span<double> x) const;
  [[nodiscard]] std::vector<float> inverse_transform(std::span<const float> z) const;
  [[nodiscard]] std::vector<double> inverse_transform(std::span<const double> z) const;

  [[nodiscard]] bool with_mean() const { return with_mean_; }
  [[nodiscard]] bool with_std() const { return with_std_; }
  [[nodiscard]] bool fitted() const { return features_ > 0; }
  [[nodiscard]] std::int64_t n_features_in() const { return features_; }
  // sklearn's attributes, one value per feature. mean() is empty when !with_mean && !with_std
  // (sklearn: None) and holds the mean otherwise (also with with_mean = false, as sklearn);
  // var() and scale() are empty when !with_std. A feature with n_samples_seen 0 has NaN
  // mean, var and scale.
  [[nodiscard]] std::span<const double> mean() const;
  [[nodiscard]] std::span<const double> var() const { return var_; }
  [[nodiscard]] std::span<const double> scale() const { return scale_; }
  [[nodiscard]] std::span<const double> n_samples_seen() const { return n_samples_seen_; }
  // The running (count, mean, M2) per feature that partial_fit merges into.
  [[nodiscard]] std::span<const Moments> moments() const { return moments_; }

  // sklearn's _is_constant_feature, bit for bit: var <= n*eps*var + (n*mean*eps)^2.
  [[nodiscard]] static bool is_constant_feature(double var, double mean, double n_samples_seen);

 private:
  template <class T>
  StandardScaler& partial_fit_impl(std::span<const T> x, std::int64_t features,
                                   const Communicator* comm, std::span<const T> sample_weight,
                                   bool refit);  // refit: called by fit (for messages)
  template <class T>
  void transform_impl(std::span<const T> x, std::span<T> y, bool inverse) const;
  // Derives the exposed attributes from moments_.
  void publish();
  void set_scales();

  bool with_mean_, with_std_;
  std::int64_t features_ = 0;
  std::vector<Moments> moments_;
  std::vector<double> mean_, var_, scale_, n_samples_seen_;
};

}  // namespace bnorm
