// SIMD kernels for channels-last tensors (inner == 1: (N,C), NHWC, NDHWC): the host side.
// Highway's skeleton: the per-target loops are in channels_last-inl.h (with wide_rows-inl.h and
// strips-inl.h), compiled once per target by foreach_target.h through this file; here are their
// entry points (one per storage type, HWY_EXPORT'ed), and the plans and task lists.
//
//   moments         tasks are (channel block, group) pairs, a block being a whole row when rows
//                   are wide; the groups' partial moments merge in a fixed tree, a row of
//                   channels at a time (merge_partial_rows)
//   normalize       tasks are blocks of rows; outputs of kStreamBytes and more go out with
//                   non-temporal stores when every row is whole vectors at aligned addresses
//   backward_sums   tasks are (channel block, group) pairs, summed in the same fixed tree
//   backward_input  tasks are blocks of rows
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/simd/channels_last.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Highway must come after foreach_target.h.
#include <hwy/highway.h>

#include <cstdint>

#include "kernels/chunking.hpp"
#include "kernels/kernel.hpp"
#include "kernels/simd/channels_last-inl.h"
#include "kernels/simd/dispatch.hpp"
#include "kernels/simd/tasks.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {

void ClMergeRows(const PartialRows& a, const PartialRows& b, std::int64_t width,
                 const MergeWeights& weights) {
  MergeRows(a, b.mean, b.mean_lo, b.m2, static_cast<size_t>(width), weights);
}

// Non-template entry points, one per storage type (dispatch.hpp), for HWY_EXPORT.
#define BNORM_CL_ENTRY_POINTS(T, S, unused)                                                       \
  void ClTileMoments##S(const T* x, const Geometry& g, std::int64_t c0, std::int64_t width,       \
                        std::int64_t first, std::int64_t last, std::int64_t leaf,                 \
                        const PartialRows& out, double* count) {                                  \
    TileMomentsT(x, g, c0, width, first, last, leaf, out, count);                                 \
  }                                                                                               \
  void ClRowSums##S(const T* x, const T* dy, const Geometry& g, std::int64_t c0,                  \
                    std::int64_t width, RowRange rows, const T* mean, double* s, double* s_xc) {  \
    RowSumsT(x, dy, g, c0, width, rows, mean, s, s_xc);                                           \
  }                                                                                               \
  void ClNormalizeRows##S(const T* x, T* y, const Geometry& g, RowRange rows,                     \
                          const NormalizeCoefficients<T>& k, const Epilogue<T>& e, bool stream) { \
    NormalizeRowsT(x, y, g, rows, k, e, stream);                                                  \
  }                                                                                               \
  void ClBackwardRows##S(const T* x, const T* dy, T* dx, const Geometry& g, RowRange rows,        \
                         const BackwardCoefficients<T>& k, bool stream) {                         \
    BackwardRowsT(x, dy, dx, g, rows, k, stream);                                                 \
  }
BNORM_SIMD_STORAGE_TYPES(BNORM_CL_ENTRY_POINTS, )
#undef BNORM_CL_ENTRY_POINTS

}  // namespace bnorm::kernels::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <type_traits>

#include "kernels/simd/parallel.hpp"
#include "scratch.hpp"

namespace bnorm::kernels::simd {

HWY_EXPORT(ClMergeRows);
BNORM_SIMD_EXPORT(ClTileMoments)
BNORM_SIMD_EXPORT(ClRowSums)
BNORM_SIMD_EXPORT(ClNormalizeRows)
BNORM_SIMD_EXPORT(ClBackwardRows)

namespace {

template <class T>
void normalize_rows(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k,
                    const Epilogue<T>& e) {
  const bool stream = stream_output<T>(g);
  for_row_tasks(g.outer, g.channels, worth_threads(g.size()),
                [&](RowRange rows) { ClNormalizeRows<T>()(x, y, g, rows, k, e, stream); });
}

}  // namespace

bool channels_last_applies(const Geometry& g) {
  return g.inner == 1;
}

template <class T>
void channels_last_moments(const T* x, const Geometry& g, Moments* moments) {
  const TilePlan plan = plan_tiles(g);
  const std::int64_t groups = plan.rows.groups;
  if (groups == 0) {
    std::fill(moments, moments + g.channels, Moments{});
    return;
  }
  const std::int64_t C = g.channels;
  // Each group's partial moments of every channel, as structure of arrays: [group * C + c].
  const auto partials = scratch<double>(ScratchSlot::kPartials, 3 * groups * C);
  const PartialRows rows{partials.data(), partials.data() + groups * C,
                         partials.data() + 2 * groups * C};
  // Wide rows are read whole, in memory order, one pass per tile (TileMomentsWide): a block of
  // kChannelBlock channels would read a strided slice of every row.
  const std::int64_t width_per_task = wide_rows<T>(g) ? C : plan.width;
  const std::int64_t blocks = (C + width_per_task - 1) / width_per_task;
  const auto counts = scratch<double>(ScratchSlot::kPartials2, blocks * groups);
  for_tasks(blocks * groups, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t group = t % groups;
    const std::int64_t c0 = (t / groups) * width_per_task;
    const std::int64_t width = std::min(width_per_task, C - c0);
    const std::int64_t first = group * plan.rows.leaves_per_group;
    const std::int64_t last = std::min(plan.rows.leaves, first + plan.rows.leaves_per_group);
    const PartialRows out = rows.at(group * C + c0);
    // Every block of a group covers the same rows, so has the same count: counts[t] for
    // t < groups (block 0) is the group's.
    ClTileMoments<T>()(x, g, c0, width, first, last, plan.rows.leaf, out, &counts[t]);
  });
  const auto merge_rows = [](const PartialRows& a, const PartialRows& b, std::int64_t width,
                             const MergeWeights& weights) {
    HWY_DYNAMIC_DISPATCH(ClMergeRows)(a, b, width, weights);
  };
  merge_partial_rows(rows, counts.data(), groups, C, merge_rows, moments);
}

template <class T>
void channels_last_normalize(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k,
                             const Epilogue<T>& e) {
  normalize_rows(x, y, g, k, e);
}

template <class T>
void channels_last_backward_sums(const T* x, const T* dy, const Geometry& g, const T* mean,
                                 double* sum_dy, double* sum_dy_xc) {
  const TilePlan plan = plan_tiles(g);
  const std::int64_t groups = plan.rows.groups;
  const std::int64_t C = g.channels;
  if (groups == 0) {
    std::fill(sum_dy, sum_dy + C, 0.0);
    std::fill(sum_dy_xc, sum_dy_xc + C, 0.0);
    return;
  }
  const auto s = scratch<double>(ScratchSlot::kPartials, groups * C);
  const auto s_xc = scratch<double>(ScratchSlot::kPartials2, groups * C);
  const std::int64_t group_rows = plan.rows.leaves_per_group * plan.rows.leaf;
  // The sums take one pass, so a task can take whole rows, read in memory order, however wide:
  // blocks of kChannelBlock channels would read a strided slice of every row (docs/kernels.md).
  // Each channel's sum runs over the same rows in the same order either way, so the result does
  // not change.
  const std::int64_t width_per_task = wide_rows<T>(g) ? C : plan.width;
  const std::int64_t blocks = (C + width_per_task - 1) / width_per_task;
  for_tasks(blocks * groups, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t group = t % groups;
    const std::int64_t c0 = (t / groups) * width_per_task;
    const std::int64_t width = std::min(width_per_task, C - c0);
    const std::int64_t r0 = group * group_rows;
    const RowRange rows{r0, std::min(g.outer, r0 + group_rows)};
    ClRowSums<T>()(x, dy, g, c0, width, rows, mean, &s[group * C + c0], &s_xc[group * C + c0]);
  });
  tree_sum_rows(s.data(), groups, C);
  tree_sum_rows(s_xc.data(), groups, C);
  std::copy_n(s.data(), C, sum_dy);
  std::copy_n(s_xc.data(), C, sum_dy_xc);
}

template <class T>
void channels_last_backward_input(const T* x, const T* dy, T* dx, const Geometry& g,
                                  const BackwardCoefficients<T>& k) {
  const bool stream = stream_output<T>(g);
  for_row_tasks(g.outer, g.channels, worth_threads(g.size()),
                [&](RowRange rows) { ClBackwardRows<T>()(x, dy, dx, g, rows, k, stream); });
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

}  // namespace bnorm::kernels::simd
#endif  // HWY_ONCE
