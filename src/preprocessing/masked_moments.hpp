// Per-feature moments of row-major data that skip NaNs and weight rows: what StandardScaler
// needs when bnorm::channel_moments (unweighted, every value counted) does not apply.
#pragma once

#include <cstdint>
#include <span>

#include "bnorm/phases.hpp"

namespace bnorm::preprocessing {

// Rows are taken in chunks of kMaskedChunkRows. Per chunk and feature, over the non-NaN values
// with weights w (all 1 when `weights` is empty), the corrected two-pass algorithm of Chan,
// Golub and LeVeque (the one sklearn's _incremental_mean_and_var uses, in double):
//   W = sum w,  c = sum w x / W,  D = sum w (x - c),  Q = sum w (x - c)^2,
//   mean = c + D / W,  M2 = Q - D^2 / W   (D is the rounding error of c: tiny, so no cancellation)
// and the chunks are merged in order with bnorm::merge. The chunk size is fixed, so the result
// depends only on the data. A feature whose weights sum to 0 gets {0, 0, 0}.
// Requires (checked by the caller): x.size() == rows * features, weights empty or of size
// rows, finite weights >= 0, no +-inf in x, out.size() == features.
inline constexpr std::int64_t kMaskedChunkRows = 256;

void masked_moments(std::span<const float> x, std::int64_t rows, std::int64_t features,
                    std::span<const float> weights, std::span<Moments> out);
void masked_moments(std::span<const double> x, std::int64_t rows, std::int64_t features,
                    std::span<const double> weights, std::span<Moments> out);

}  // namespace bnorm::preprocessing
