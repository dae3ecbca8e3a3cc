// masked_moments: NaN-skipping, weighted per-feature moments (see masked_moments.hpp).
#include "preprocessing/masked_moments.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace bnorm::preprocessing {
namespace {

template <class T>
void masked_moments_impl(std::span<const T> x, std::int64_t rows, std::int64_t features,
                         std::span<const T> weights, std::span<Moments> out) {
  const auto F = static_cast<std::size_t>(features);
  std::fill(out.begin(), out.end(), Moments{});
  // Per chunk: sum w, sum w x (then the chunk mean c), sum w (x - c), sum w (x - c)^2.
  std::vector<double> w_sum(F), wx_sum(F), center(F), d_sum(F), q_sum(F);
  auto weight_of = [&](std::int64_t r) {
    return weights.empty() ? 1.0 : static_cast<double>(weights[static_cast<std::size_t>(r)]);
  };
  for (std::int64_t begin = 0; begin < rows; begin += kMaskedChunkRows) {
    const std::int64_t end = std::min(rows, begin + kMaskedChunkRows);
    std::fill(w_sum.begin(), w_sum.end(), 0.0);
    std::fill(wx_sum.begin(), wx_sum.end(), 0.0);
    std::fill(d_sum.begin(), d_sum.end(), 0.0);
    std::fill(q_sum.begin(), q_sum.end(), 0.0);
    for (std::int64_t r = begin; r < end; ++r) {
      const double w = weight_of(r);
      const T* row = x.data() + static_cast<std::size_t>(r) * F;
      for (std::size_t f = 0; f < F; ++f) {
        const double v = static_cast<double>(row[f]);
        if (std::isnan(v)) continue;
        w_sum[f] += w;
        wx_sum[f] += w * v;
      }
    }
    for (std::size_t f = 0; f < F; ++f) center[f] = w_sum[f] > 0 ? wx_sum[f] / w_sum[f] : 0.0;
    // Second pass over the same chunk while it is still in cache.
    for (std::int64_t r = begin; r < end; ++r) {
      const double w = weight_of(r);
      const T* row = x.data() + static_cast<std::size_t>(r) * F;
      for (std::size_t f = 0; f < F; ++f) {
        const double v = static_cast<double>(row[f]);
        if (std::isnan(v)) continue;
        const double d = v - center[f];
        d_sum[f] += w * d;
        q_sum[f] += w * (d * d);
      }
    }
    for (std::size_t f = 0; f < F; ++f) {
      const double W = w_sum[f];
      if (W <= 0) continue;
      const Moments chunk{W, center[f] + d_sum[f] / W,
                          std::max(0.0, q_sum[f] - d_sum[f] * d_sum[f] / W)};
      out[f] = merge(out[f], chunk);
    }
  }
}

}  // namespace

void masked_moments(std::span<const float> x, std::int64_t rows, std::int64_t features,
                    std::span<const float> weights, std::span<Moments> out) {
  masked_moments_impl(x, rows, features, weights, out);
}
void masked_moments(std::span<const double> x, std::int64_t rows, std::int64_t features,
                    std::span<const double> weights, std::span<Moments> out) {
  masked_moments_impl(x, rows, features, weights, out);
}

}  // namespace bnorm::preprocessing
