// How the SIMD kernels use threads: a task index range run by OpenMP when the problem is big
// enough, otherwise on the calling thread without entering a parallel region at all (a
// parallel region with if(false) still costs a runtime call and a team set-up).
//
// Tasks never depend on the thread count (chunking.hpp); a thread only picks which tasks it runs.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "kernels/chunking.hpp"
#include "kernels/simd/tasks.hpp"

namespace bnorm::kernels::simd {

// Whether a problem of `values` elements is worth threads.
inline bool worth_threads(std::int64_t values) {
  return values >= kParallelMinValues && omp_get_max_threads() > 1;
}

template <class F>
void for_tasks(std::int64_t tasks, bool parallel, F&& f) {
  if (parallel && tasks > 1) {
#pragma omp parallel for schedule(static)
    for (std::int64_t t = 0; t < tasks; ++t) f(t);
  } else {
    for (std::int64_t t = 0; t < tasks; ++t) f(t);
  }
}

// Values per elementwise task (normalize, backward input): large enough that a task's overhead
// (one dispatch, one coefficient load) is negligible, small enough to balance two threads on a
// 1 MB tensor.
inline constexpr std::int64_t kElementwiseTaskValues = 16384;

// Rows of `row_values` values per elementwise task (at least one).
inline std::int64_t rows_per_task(std::int64_t row_values) {
  return row_values >= kElementwiseTaskValues ? 1 : kElementwiseTaskValues / row_values;
}

// The elementwise passes' tasks: `rows` rows of `row_values` values in blocks of
// rows_per_task(row_values) rows, f(RowRange) for each block.
template <class F>
void for_row_tasks(std::int64_t rows, std::int64_t row_values, bool parallel, F&& f) {
  const std::int64_t per_task = rows_per_task(row_values);
  const std::int64_t tasks = (rows + per_task - 1) / per_task;
  for_tasks(tasks, parallel, [&](std::int64_t t) {
    const std::int64_t begin = t * per_task;
    f(RowRange{begin, std::min(rows, begin + per_task)});
  });
}

// Outputs at least this large are written with non-temporal (streaming) stores: they skip the
// read-for-ownership of each line (a third of a copy's memory traffic) and do not evict the
// inputs, which are still to be read. A smaller output stays in cache for the next layer.
// 8 MiB is beyond what two cores' share of a last-level cache keeps for the next layer.
inline constexpr std::int64_t kStreamBytes = std::int64_t{8} << 20;

template <class T>
bool stream_output(const Geometry& g) {
  return g.size() * static_cast<std::int64_t>(sizeof(T)) >= kStreamBytes;
}

// The groups' partial moments, rows of C channels (group i's at rows.at(i * C)) with one count
// per group, merged in tree_merge's fixed tree a row at a time: merge_rows(a, b, C, weights)
// merges row b into row a (MergeRows, dispatched by the caller's translation unit). Walking one
// channel down the groups instead would stride C values per access. Writes every channel's
// moments.
template <class MergeRowsFn>
void merge_partial_rows(const PartialRows& rows, double* counts, std::int64_t groups,
                        std::int64_t C, MergeRowsFn&& merge_rows, Moments* moments) {
  for (std::int64_t step = 1; step < groups; step *= 2) {
    for (std::int64_t i = 0; i + step < groups; i += 2 * step) {
      const MergeWeights weights = merge_weights(counts[i], counts[i + step]);
      merge_rows(rows.at(i * C), rows.at((i + step) * C), C, weights);
      counts[i] = weights.count;
    }
  }
  for (std::int64_t c = 0; c < C; ++c) {
    moments[c] = to_moments(Partial{counts[0], rows.mean[c], rows.mean_lo[c], rows.m2[c]});
  }
}

}  // namespace bnorm::kernels::simd
