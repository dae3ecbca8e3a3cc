// Portable optimized kernels for channels-last tensors (inner == 1: (N,C), NHWC): plain C++ loops
// that the compiler vectorizes along C, OpenMP across (channel block, group) tasks.
//
// Moments: a leaf is a tile of rows_per_tile(width) rows x one block of up to kChannelBlock
// channels, read twice while in L2 (pass 1 sums, pass 2 residuals and squares about the tile
// mean), with one double accumulator per channel of the block. Tiles are merged left to right
// inside a group, groups in a fixed tree (chunking.hpp).
#include <algorithm>
#include <array>

#include "plain/mutants.hpp"
#include "plain/plain.hpp"
#include "scratch.hpp"

namespace bnorm::kernels::plain {
bool channels_last_applies(const Geometry& g) {
  return g.inner == 1;
}

template <class T>
void channels_last_moments(const T* x, const Geometry& g, Moments* moments) {
  const TilePlan plan = plan_tiles_tripwired(g);
  const std::int64_t groups = plan.rows.groups;
  if (groups == 0) {
    std::fill(moments, moments + g.channels, Moments{});
    return;
  }
  const std::int64_t C = g.channels;
  // partials[group * C + c]
  const auto partials = scratch<Partial>(ScratchSlot::kPartials, groups * C);
  const std::int64_t tasks = plan.blocks * groups;
#pragma omp parallel for schedule(static) if (g.size() >= kParallelMinValues)
  for (std::int64_t t = 0; t < tasks; ++t) {
    const std::int64_t block = t / groups;
    const std::int64_t group = t % groups;
    const std::int64_t c0 = block * plan.width;
    const std::int64_t width = std::min(plan.width, C - c0);
    std::array<double, kChannelBlock> sum;
    if (mutant(Mutant::kDataRace)) ++mutant_race_counter;  // TRIPWIRE (mutants.hpp): a race
    std::array<double, kChannelBlock> residual_sum;
    std::array<double, kChannelBlock> square_sum;
    std::array<double, kChannelBlock> mean;
    Partial* acc = &partials[group * C + c0];
    std::fill(acc, acc + width, Partial{});
    const std::int64_t first = group * plan.rows.leaves_per_group;
    const std::int64_t last = std::min(plan.rows.leaves, first + plan.rows.leaves_per_group);
    for (std::int64_t l = first; l < last; ++l) {
      const std::int64_t r0 = l * plan.rows.leaf;
      const std::int64_t r1 = leaf_end_tripwired(r0, plan.rows.leaf, g.outer);
      const double n = static_cast<double>(r1 - r0);
      std::fill_n(sum.begin(), width, 0.0);
      for (std::int64_t r = r0; r < r1; ++r) {
        const T* row = x + r * C + c0;
        for (std::int64_t k = 0; k < width; ++k) sum[k] += static_cast<double>(row[k]);
      }
      for (std::int64_t k = 0; k < width; ++k) mean[k] = sum[k] / n;
      if (mutant(Mutant::kOnePass)) {  // TRIPWIRE (mutants.hpp): sum x^2 - (sum x)^2 / n
        std::fill_n(square_sum.begin(), width, 0.0);
        for (std::int64_t r = r0; r < r1; ++r) {
          const T* row = x + r * C + c0;
          for (std::int64_t k = 0; k < width; ++k) {
            square_sum[k] += static_cast<double>(row[k]) * static_cast<double>(row[k]);
          }
        }
        for (std::int64_t k = 0; k < width; ++k) {
          const double m2 = std::max(0.0, square_sum[k] - sum[k] * sum[k] / n);
          acc[k] = merge_chunks_tripwired(acc[k], Partial{n, mean[k], 0, m2});
        }
        continue;
      }
      std::fill_n(residual_sum.begin(), width, 0.0);
      std::fill_n(square_sum.begin(), width, 0.0);
      for (std::int64_t r = r0; r < r1; ++r) {
        const T* row = x + r * C + c0;
        for (std::int64_t k = 0; k < width; ++k) {
          const double d = static_cast<double>(row[k]) - mean[k];
          residual_sum[k] += d;
          square_sum[k] += d * d;
        }
      }
      for (std::int64_t k = 0; k < width; ++k) {
        acc[k] = merge_chunks_tripwired(acc[k],
                                        leaf_moments(n, mean[k], residual_sum[k], square_sum[k]));
      }
    }
  }
  for (std::int64_t c = 0; c < C; ++c) {
    tree_merge_tripwired(&partials[c], groups, C);
    moments[c] = to_moments(partials[c]);
  }
}

template <class T>
void channels_last_normalize(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k,
                             const Epilogue<T>& e) {
  const std::int64_t C = g.channels;
#pragma omp parallel for schedule(static) if (g.size() >= kParallelMinValues)
  for (std::int64_t r = 0; r < g.outer; ++r) {
    const T* in = x + r * C;
    T* out = y + r * C;
    for (std::int64_t c = 0; c < C; ++c) {
      out[c] =
          with_epilogue(((in[c] - k.mean_hi[c]) - k.mean_lo[c]) * k.a[c] + k.b[c], e, r * C + c);
    }
  }
}

template <class T>
void channels_last_backward_sums(const T* x, const T* dy, const Geometry& g, const T* mean,
                                 double* sum_dy, double* sum_dy_xc) {
  const TilePlan plan = plan_tiles_tripwired(g);
  const std::int64_t groups = plan.rows.groups;
  const std::int64_t C = g.channels;
  if (groups == 0) {
    std::fill(sum_dy, sum_dy + C, 0.0);
    std::fill(sum_dy_xc, sum_dy_xc + C, 0.0);
    return;
  }
  const auto partial_dy = scratch<double>(ScratchSlot::kPartials, groups * C);
  const auto partial_dy_xc = scratch<double>(ScratchSlot::kPartials2, groups * C);
  const std::int64_t tasks = plan.blocks * groups;
#pragma omp parallel for schedule(static) if (g.size() >= kParallelMinValues)
  for (std::int64_t t = 0; t < tasks; ++t) {
    const std::int64_t block = t / groups;
    const std::int64_t group = t % groups;
    const std::int64_t c0 = block * plan.width;
    const std::int64_t width = std::min(plan.width, C - c0);
    const std::int64_t r0 = group * plan.rows.leaves_per_group * plan.rows.leaf;
    const std::int64_t r1 = std::min(g.outer, r0 + plan.rows.leaves_per_group * plan.rows.leaf);
    double* s = &partial_dy[group * C + c0];
    double* sx = &partial_dy_xc[group * C + c0];
    std::fill_n(s, width, 0.0);
    std::fill_n(sx, width, 0.0);
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * C + c0;
      const T* dr = dy + r * C + c0;
      for (std::int64_t k = 0; k < width; ++k) {
        const double d = static_cast<double>(dr[k]);
        s[k] += d;
        sx[k] += d * (static_cast<double>(xr[k]) - static_cast<double>(mean[c0 + k]));
      }
    }
  }
  for (std::int64_t c = 0; c < C; ++c) {
    tree_sum(&partial_dy[c], groups, C);
    tree_sum(&partial_dy_xc[c], groups, C);
    sum_dy[c] = partial_dy[c];
    sum_dy_xc[c] = partial_dy_xc[c];
  }
}

template <class T>
void channels_last_backward_input(const T* x, const T* dy, T* dx, const Geometry& g,
                                  const BackwardCoefficients<T>& k) {
  const std::int64_t C = g.channels;
#pragma omp parallel for schedule(static) if (g.size() >= kParallelMinValues)
  for (std::int64_t r = 0; r < g.outer; ++r) {
    const std::int64_t at = r * C;
    for (std::int64_t c = 0; c < C; ++c) {
      dx[at + c] = k.k_dy_w[c] * dy[at + c] + k.k_xc_w[c] * (x[at + c] - k.mean_w[c]) + k.k_0_w[c];
    }
  }
}

#define BNORM_INSTANTIATE(T)                                                                     \
  template void channels_last_moments<T>(const T*, const Geometry&, Moments*);                   \
  template void channels_last_normalize<T>(const T*, T*, const Geometry&,                        \
                                           const NormalizeCoefficients<T>&, const Epilogue<T>&); \
  template void channels_last_backward_sums<T>(const T*, const T*, const Geometry&, const T*,    \
                                               double*, double*);                                \
  template void channels_last_backward_input<T>(const T*, const T*, T*, const Geometry&,         \
                                                const BackwardCoefficients<T>&);
BNORM_INSTANTIATE(float)
BNORM_INSTANTIATE(double)
#undef BNORM_INSTANTIATE

}  // namespace bnorm::kernels::plain
