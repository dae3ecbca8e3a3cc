// bnorm::StandardScaler in the training engine: fitted on an image set as the engine sees it,
// and folded into the first Dense layer so that a model trained on standardized inputs runs on
// raw ones with no preprocessing step.
#pragma once

#include <cstdint>

#include "bnorm/nn/dense.hpp"
#include "bnorm/nn/idx.hpp"
#include "bnorm/standard_scaler.hpp"

namespace bnorm::nn {

// Rows per partial_fit when fitting on a Dataset: bounds the memory of the float copy.
inline constexpr std::int64_t kScalerFitRows = 4096;

// Fits a scaler on every image of `data` exactly as gather<float> gives them to the model
// (pixels / 255 in float), kScalerFitRows images per partial_fit: the statistics of the whole
// set, merged by Chan's formula in double. Throws bnorm::Error for an empty dataset.
[[nodiscard]] StandardScaler fit_standard_scaler(const Dataset& data, bool with_mean = true,
                                                 bool with_std = true);

// Rewrites `dense` so that dense'(x) == dense(scaler.transform(x)) for every x:
//   dense(z) = z K + b with z_i = (x_i - m_i) / s_i
//   => K'_ij = K_ij / s_i,  b'_j = b_j - sum_i m_i K'_ij
// where s = scale_ (1 when !with_std) and m = mean_ (0 when !with_mean). Computed in double,
// each output rounded once to T. The two sides then agree to T's rounding, not bitwise
// (transform rounds z to T before the product).
// Throws bnorm::Error (and leaves dense unchanged) when the scaler is not fitted, when
// dense.in_features() != scaler.n_features_in(), when a feature has no statistics (NaN mean or
// scale: it saw no sample), or when the shift is non-zero and dense has no bias to absorb it.
template <class T>
void fold_standard_scaler(const StandardScaler& scaler, Dense<T>& dense);

extern template void fold_standard_scaler(const StandardScaler&, Dense<float>&);
extern template void fold_standard_scaler(const StandardScaler&, Dense<double>&);

}  // namespace bnorm::nn
