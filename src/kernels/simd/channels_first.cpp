// SIMD kernels for channels-first tensors (inner > 1: NCHW, NCDHW, (N,C,L)): the host side.
// Highway's skeleton: the per-target loops are in channels_first-inl.h and short_runs-inl.h,
// compiled once per target by foreach_target.h through this file; here are their entry points
// (one per storage type, HWY_EXPORT'ed), and the plans, thresholds and task lists that call them.
//
//   moments         tasks are (channel, group) pairs: GroupMomentsT, groups merged in a fixed tree;
//                   float short runs (7x7): blocks of channels through each row (ShortRunMomentsT)
//   normalize       tasks are blocks of rows (o, c): NormalizeRowsT with the epilogue
//   backward_sums   tasks are (channel, group) pairs (GroupSumsT), or short-run blocks
//   backward_input  tasks are blocks of rows: BackwardRowsT
//   forward_training / backward (fused): one task per channel whose values fit in L2
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/simd/channels_first.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Highway must come after foreach_target.h.
#include <hwy/highway.h>

#include <cstdint>

#include "kernels/chunking.hpp"
#include "kernels/kernel.hpp"
#include "kernels/simd/channels_first-inl.h"
#include "kernels/simd/dispatch.hpp"
#include "kernels/simd/short_runs-inl.h"
#include "kernels/simd/tasks.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {

void CfMergeRows(const PartialRows& a, const PartialRows& b, std::int64_t width,
                 const MergeWeights& weights) {
  MergeRows(a, b.mean, b.mean_lo, b.m2, static_cast<size_t>(width), weights);
}

// Short runs are a float path only (short_runs below).
void CfShortRunMoments(const float* x, const Geometry& g, std::int64_t c0, std::int64_t width,
                       std::int64_t first, std::int64_t last, std::int64_t leaf,
                       const PartialRows& out, double* count) {
  ShortRunMomentsT(x, g, c0, width, first, last, leaf, out, count);
}
void CfShortRunSums(const float* x, const float* dy, const Geometry& g, std::int64_t c0,
                    std::int64_t width, std::int64_t r0, std::int64_t r1, const float* mean,
                    double* s, double* s_xc) {
  ShortRunSumsT(x, dy, g, c0, width, r0, r1, mean, s, s_xc);
}

// Non-template entry points, one per storage type (dispatch.hpp), for HWY_EXPORT.
#define BNORM_CF_ENTRY_POINTS(T, S, unused)                                                       \
  Partial CfGroupMoments##S(const T* x, const Geometry& g, std::int64_t c, std::int64_t first,    \
                            std::int64_t last) {                                                  \
    return GroupMomentsT(x, g, c, first, last);                                                   \
  }                                                                                               \
  void CfGroupSums##S(const T* x, const T* dy, const Geometry& g, std::int64_t c,                 \
                      std::int64_t begin, std::int64_t end, T mean, double* s, double* s_xc) {    \
    GroupSumsT(x, dy, g, c, begin, end, mean, s, s_xc);                                           \
  }                                                                                               \
  void CfNormalizeRows##S(const T* x, T* y, const Geometry& g, RowRange rows,                     \
                          const NormalizeCoefficients<T>& k, const Epilogue<T>& e, bool stream) { \
    NormalizeRowsT(x, y, g, rows, k, e, stream);                                                  \
  }                                                                                               \
  void CfBackwardRows##S(const T* x, const T* dy, T* dx, const Geometry& g, RowRange rows,        \
                         const BackwardCoefficients<T>& k, bool stream) {                         \
    BackwardRowsT(x, dy, dx, g, rows, k, stream);                                                 \
  }                                                                                               \
  void CfForwardChannel##S(const T* x, T* y, const Geometry& g, std::int64_t c,                   \
                           const FusedForward<T>& f, bool stream) {                               \
    ForwardChannelT(x, y, g, c, f, stream);                                                       \
  }                                                                                               \
  void CfBackwardChannel##S(const T* x, const T* dy, T* dx, const Geometry& g, std::int64_t c,    \
                            const FusedBackward<T>& f, bool stream) {                             \
    BackwardChannelT(x, dy, dx, g, c, f, stream);                                                 \
  }
BNORM_SIMD_STORAGE_TYPES(BNORM_CF_ENTRY_POINTS, )
#undef BNORM_CF_ENTRY_POINTS

}  // namespace bnorm::kernels::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <type_traits>

#include "kernels/simd/parallel.hpp"
#include "scratch.hpp"

namespace bnorm::kernels::simd {

HWY_EXPORT(CfShortRunMoments);
HWY_EXPORT(CfShortRunSums);
HWY_EXPORT(CfMergeRows);
BNORM_SIMD_EXPORT(CfGroupMoments)
BNORM_SIMD_EXPORT(CfGroupSums)
BNORM_SIMD_EXPORT(CfNormalizeRows)
BNORM_SIMD_EXPORT(CfBackwardRows)
BNORM_SIMD_EXPORT(CfForwardChannel)
BNORM_SIMD_EXPORT(CfBackwardChannel)

namespace {

// The fused paths keep one channel of every tensor they read (x; x and dy in the backward) in
// L2 between the statistics and the elementwise pass: 1 MiB of L2 per core on the AVX-512
// parts we target (Zen 4, Skylake-SP and later). Bigger channels run the two phases instead.
constexpr std::int64_t kFuseBytes = std::int64_t{1} << 20;
// With fewer channels than this per thread, fused (one task per channel) balances poorly.
constexpr std::int64_t kFuseChannelsPerThread = 4;

// Short runs: float channels whose runs (H*W values) are under kShortRunBytes, such as 7x7 and
// 10x10. A channel's runs are then a few lines each, C * H * W values apart, and one channel at a
// time reads a few lines per DRAM page. Their statistics and sums walk blocks of channels through
// each row in memory order (ShortRunMomentsT, ShortRunSumsT), and the elementwise passes run
// unfused (docs/kernels.md: short runs). From 14x14 on, the fused per-channel passes (x from
// memory once) measured as fast or faster.
// Double keeps the two-pass leaves: the one pass's worst-case bound grows with the leaf's count.
constexpr std::int64_t kShortRunBytes = 512;
// Values of a row per short-run task (a block of channels), and values of a channel per leaf.
constexpr std::int64_t kShortRunBlockValues = 4096;

template <class T>
bool short_runs(const Geometry& g) {
  return std::is_same_v<T, float> &&
         g.inner * static_cast<std::int64_t>(sizeof(T)) < kShortRunBytes;
}

struct ShortRunPlan {
  std::int64_t block = 1;  // channels per task
  ChunkPlan rows;          // leaves of rows (values of o), about kLeafValues values per channel
};

inline ShortRunPlan plan_short_runs(const Geometry& g) {
  ShortRunPlan p;
  p.block = std::max<std::int64_t>(1, kShortRunBlockValues / g.inner);
  p.rows = plan_chunks(g.outer, std::max<std::int64_t>(1, kLeafValues / g.inner));
  return p;
}

void short_run_moments(const float* x, const Geometry& g, Moments* moments) {
  const ShortRunPlan plan = plan_short_runs(g);
  const std::int64_t groups = plan.rows.groups;
  const std::int64_t C = g.channels;
  const std::int64_t blocks = (C + plan.block - 1) / plan.block;
  const auto partials = scratch<double>(ScratchSlot::kPartials, 3 * groups * C);
  const PartialRows rows{partials.data(), partials.data() + groups * C,
                         partials.data() + 2 * groups * C};
  // Every block of a group covers the same rows: counts[group] (block 0's task) is the group's.
  const auto counts = scratch<double>(ScratchSlot::kPartials2, blocks * groups);
  for_tasks(blocks * groups, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t group = t % groups;
    const std::int64_t c0 = (t / groups) * plan.block;
    const std::int64_t width = std::min(plan.block, C - c0);
    const std::int64_t first = group * plan.rows.leaves_per_group;
    const std::int64_t last = std::min(plan.rows.leaves, first + plan.rows.leaves_per_group);
    HWY_DYNAMIC_DISPATCH(CfShortRunMoments)
    (x, g, c0, width, first, last, plan.rows.leaf, rows.at(group * C + c0), &counts[t]);
  });
  const auto merge_rows = [](const PartialRows& a, const PartialRows& b, std::int64_t width,
                             const MergeWeights& weights) {
    HWY_DYNAMIC_DISPATCH(CfMergeRows)(a, b, width, weights);
  };
  merge_partial_rows(rows, counts.data(), groups, C, merge_rows, moments);
}

void short_run_sums(const float* x, const float* dy, const Geometry& g, const float* mean,
                    double* sum_dy, double* sum_dy_xc) {
  const ShortRunPlan plan = plan_short_runs(g);
  const std::int64_t groups = plan.rows.groups;
  const std::int64_t C = g.channels;
  const std::int64_t blocks = (C + plan.block - 1) / plan.block;
  const std::int64_t group_rows = plan.rows.leaves_per_group * plan.rows.leaf;
  const auto s = scratch<double>(ScratchSlot::kPartials, groups * C);
  const auto s_xc = scratch<double>(ScratchSlot::kPartials2, groups * C);
  for_tasks(blocks * groups, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t group = t % groups;
    const std::int64_t c0 = (t / groups) * plan.block;
    const std::int64_t width = std::min(plan.block, C - c0);
    const std::int64_t r0 = group * group_rows;
    const std::int64_t r1 = std::min(g.outer, r0 + group_rows);
    HWY_DYNAMIC_DISPATCH(CfShortRunSums)
    (x, dy, g, c0, width, r0, r1, mean, &s[group * C + c0], &s_xc[group * C + c0]);
  });
  tree_sum_rows(s.data(), groups, C);
  tree_sum_rows(s_xc.data(), groups, C);
  std::copy_n(s.data(), C, sum_dy);
  std::copy_n(s_xc.data(), C, sum_dy_xc);
}

template <class T>
bool fusable(const Geometry& g, std::int64_t tensors) {
  if (short_runs<T>(g)) return false;
  const std::int64_t bytes = g.count_per_channel() * static_cast<std::int64_t>(sizeof(T)) * tensors;
  if (bytes > kFuseBytes) return false;
  return !worth_threads(g.size()) || g.channels >= kFuseChannelsPerThread * omp_get_max_threads();
}

// Non-temporal stores write whole lines best. A run shorter than kStreamRunBytes shares most of
// its lines with the runs beside it, written partly by streaming and partly by regular (head and
// tail) stores; such outputs take regular stores (docs/kernels.md: non-temporal stores).
constexpr std::int64_t kStreamRunBytes = 256;

template <class T>
bool stream_runs(const Geometry& g) {
  return stream_output<T>(g) && g.inner * static_cast<std::int64_t>(sizeof(T)) >= kStreamRunBytes;
}

template <class T>
void normalize_rows(const T* x, T* y, const Geometry& g, const NormalizeCoefficients<T>& k,
                    const Epilogue<T>& e) {
  const bool stream = stream_runs<T>(g);
  for_row_tasks(g.outer * g.channels, g.inner, worth_threads(g.size()),
                [&](RowRange rows) { CfNormalizeRows<T>()(x, y, g, rows, k, e, stream); });
}

}  // namespace

bool channels_first_applies(const Geometry& g) {
  return g.inner > 1;
}

template <class T>
void channels_first_moments(const T* x, const Geometry& g, Moments* moments) {
  const ChunkPlan plan = plan_chunks(g.count_per_channel(), kLeafValues);
  if (plan.groups == 0) {
    std::fill(moments, moments + g.channels, Moments{});
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (short_runs<T>(g)) {
      short_run_moments(x, g, moments);
      return;
    }
  }
  const auto partials = scratch<Partial>(ScratchSlot::kPartials, g.channels * plan.groups);
  for_tasks(g.channels * plan.groups, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t c = t / plan.groups;
    const std::int64_t first = (t % plan.groups) * plan.leaves_per_group;
    const std::int64_t last = std::min(plan.leaves, first + plan.leaves_per_group);
    partials[t] = CfGroupMoments<T>()(x, g, c, first, last);
  });
  for (std::int64_t c = 0; c < g.channels; ++c) {
    tree_merge(&partials[c * plan.groups], plan.groups, 1);
    moments[c] = to_moments(partials[c * plan.groups]);
  }
}

template <class T>
void channels_first_normalize(const T* x, T* y, const Geometry& g,
                              const NormalizeCoefficients<T>& k, const Epilogue<T>& e) {
  normalize_rows(x, y, g, k, e);
}

template <class T>
void channels_first_backward_sums(const T* x, const T* dy, const Geometry& g, const T* mean,
                                  double* sum_dy, double* sum_dy_xc) {
  const std::int64_t count = g.count_per_channel();
  const ChunkPlan plan = plan_chunks(count, kLeafValues);
  if (plan.groups == 0) {
    std::fill(sum_dy, sum_dy + g.channels, 0.0);
    std::fill(sum_dy_xc, sum_dy_xc + g.channels, 0.0);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (short_runs<T>(g)) {
      short_run_sums(x, dy, g, mean, sum_dy, sum_dy_xc);
      return;
    }
  }
  const std::int64_t tasks = g.channels * plan.groups;
  const auto s = scratch<double>(ScratchSlot::kPartials, tasks);
  const auto s_xc = scratch<double>(ScratchSlot::kPartials2, tasks);
  const std::int64_t group_values = plan.leaves_per_group * plan.leaf;
  for_tasks(tasks, worth_threads(g.size()), [&](std::int64_t t) {
    const std::int64_t c = t / plan.groups;
    const std::int64_t begin = (t % plan.groups) * group_values;
    const std::int64_t end = std::min(count, begin + group_values);
    CfGroupSums<T>()(x, dy, g, c, begin, end, mean[c], &s[t], &s_xc[t]);
  });
  for (std::int64_t c = 0; c < g.channels; ++c) {
    tree_sum(&s[c * plan.groups], plan.groups, 1);
    tree_sum(&s_xc[c * plan.groups], plan.groups, 1);
    sum_dy[c] = s[c * plan.groups];
    sum_dy_xc[c] = s_xc[c * plan.groups];
  }
}

template <class T>
void channels_first_backward_input(const T* x, const T* dy, T* dx, const Geometry& g,
                                   const BackwardCoefficients<T>& k) {
  const bool stream = stream_runs<T>(g);
  for_row_tasks(g.outer * g.channels, g.inner, worth_threads(g.size()),
                [&](RowRange rows) { CfBackwardRows<T>()(x, dy, dx, g, rows, k, stream); });
}

template <class T>
bool channels_first_forward_training(const T* x, T* y, const Geometry& g, const T* gamma,
                                     const T* beta, double epsilon, double* mean,
                                     double* variance) {
  if (!fusable<T>(g, 1) || g.size() == 0) return false;
  const bool stream = stream_output<T>(g);
  const FusedForward<T> f{gamma, beta, epsilon, mean, variance};
  for_tasks(g.channels, worth_threads(g.size()),
            [&](std::int64_t c) { CfForwardChannel<T>()(x, y, g, c, f, stream); });
  return true;
}

template <class T>
bool channels_first_backward(const T* x, const T* dy, T* dx, const Geometry& g, const T* gamma,
                             const T* mean, const T* variance, double epsilon, double* sum_dy,
                             double* sum_dy_xhat) {
  if (!fusable<T>(g, 2) || g.size() == 0) return false;
  const bool stream = stream_output<T>(g);
  const FusedBackward<T> f{gamma, mean, variance, epsilon, sum_dy, sum_dy_xhat};
  for_tasks(g.channels, worth_threads(g.size()),
            [&](std::int64_t c) { CfBackwardChannel<T>()(x, dy, dx, g, c, f, stream); });
  return true;
}

#define BNORM_INSTANTIATE(T)                                                                      \
  template void channels_first_moments<T>(const T*, const Geometry&, Moments*);                   \
  template void channels_first_normalize<T>(const T*, T*, const Geometry&,                        \
                                            const NormalizeCoefficients<T>&, const Epilogue<T>&); \
  template void channels_first_backward_sums<T>(const T*, const T*, const Geometry&, const T*,    \
                                                double*, double*);                                \
  template void channels_first_backward_input<T>(const T*, const T*, T*, const Geometry&,         \
                                                 const BackwardCoefficients<T>&);                 \
  template bool channels_first_forward_training<T>(const T*, T*, const Geometry&, const T*,       \
                                                   const T*, double, double*, double*);           \
  template bool channels_first_backward<T>(const T*, const T*, T*, const Geometry&, const T*,     \
                                           const T*, const T*, double, double*, double*);
BNORM_INSTANTIATE(float)
BNORM_INSTANTIATE(double)
#undef BNORM_INSTANTIATE

}  // namespace bnorm::kernels::simd
#endif  // HWY_ONCE
