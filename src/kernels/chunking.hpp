// How the optimized kernels cut each channel's values into chunks, and merge the chunks.
//
// Every boundary here is a function of the geometry alone, never of the thread count: a thread
// only decides *who* computes a chunk, not *what* a chunk is, and partial results are merged in
// one fixed tree. That is why results are bitwise identical for any OMP_NUM_THREADS.
//
//   leaf   - a run of consecutive values of one channel (logical order o-major, i-minor), small
//            enough to stay in cache between the two passes of the moments.
//   group  - consecutive leaves handled by one task, merged left to right. The number of groups
//            per channel is capped, so scratch memory grows with C but not with N*H*W.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "bnorm/geometry.hpp"
#include "bnorm/phases.hpp"
#include "kernels/mutants.hpp"

namespace bnorm::kernels {

// Values of one channel per leaf in the channels-first family: 16 KiB of float, in L1.
inline constexpr std::int64_t kLeafValues = 4096;
// Values of a channels-last tile (rows x channel block): 64 KiB of float, in L2.
inline constexpr std::int64_t kTileValues = 16384;
// Channels per channels-last block: the width of the per-channel accumulators.
inline constexpr std::int64_t kChannelBlock = 256;
// At most this many groups (partial results) per channel.
inline constexpr std::int64_t kMaxGroups = 64;
// Below this many values a call runs on the calling thread: starting threads would cost more.
inline constexpr std::int64_t kParallelMinValues = std::int64_t{1} << 15;

// Two traversals of a tile, chosen by the geometry alone (so results never depend on threads):
// - narrow rows (C * sizeof(T) < kWideRowBytes): strips of one vector of channels walked down
//   the rows with register accumulators (simd/channels_last.cpp);
// - wide rows: row by row with per-channel accumulators in L1. Walking a strip down rows that
//   are a multiple of 4 KiB apart (C = 1024 floats) maps every row to the same L1 set, so
//   wide rows are read in memory order instead.
// Measured on NHWC float at 1 thread: strips are 2.2x and 1.4x faster for C = 8 and 16 (rows of 32
// and 64 bytes); the row-major traversal is faster from C = 32 (128 bytes) on, 1.2x there.
inline constexpr std::int64_t kWideRowBytes = 128;

struct ChunkPlan {
  std::int64_t leaf = 1;              // values (or rows) per leaf
  std::int64_t leaves = 0;            // leaves per channel
  std::int64_t leaves_per_group = 1;  // leaves per group
  std::int64_t groups = 0;            // groups per channel
};

// Plans `count` values in leaves of `leaf`; count may be 0 (no leaves, no groups).
inline ChunkPlan plan_chunks(std::int64_t count, std::int64_t leaf) {
  ChunkPlan p;
  p.leaf = leaf;
  p.leaves = (count + leaf - 1) / leaf;
  std::int64_t max_groups = kMaxGroups;
  // TRIPWIRE (mutants.hpp): groups from the thread count make the merge tree depend on it.
  if (mutant(Mutant::kThreadOrder)) max_groups = omp_get_max_threads();
  p.leaves_per_group = std::max<std::int64_t>(1, (p.leaves + max_groups - 1) / max_groups);
  p.groups = (p.leaves + p.leaves_per_group - 1) / p.leaves_per_group;
  return p;
}

// The end of the leaf that starts at `begin`: every leaf is full but a channel's last.
inline std::int64_t leaf_end(std::int64_t begin, std::int64_t leaf, std::int64_t count) {
  const std::int64_t end = std::min(count, begin + leaf);
  // TRIPWIRE (mutants.hpp): a partial last leaf drops its last value, as a lost vector tail would.
  if (mutant(Mutant::kDroppedTail) && end - begin < leaf && end - begin > 1) return end - 1;
  return end;
}

// Chan's merge of two chunks' moments (phases.hpp), the one every kernel uses between chunks.
inline Moments merge_chunks(const Moments& a, const Moments& b) {
  // TRIPWIRE (mutants.hpp): the plain average of the means, as if the chunks had equal counts.
  if (mutant(Mutant::kUnweightedMerge) && a.count > 0 && b.count > 0) {
    const double n = a.count + b.count;
    const double delta = b.mean - a.mean;
    return Moments{n, (a.mean + b.mean) / 2, a.m2 + b.m2 + delta * delta * (a.count * b.count / n)};
  }
  return merge(a, b);
}

// Rows per channels-last leaf for a block of `width` channels: even, so that values paired
// in consecutive rows never straddle two leaves.
inline std::int64_t rows_per_tile(std::int64_t width) {
  const std::int64_t rows =
      std::max<std::int64_t>(2, kTileValues / std::max<std::int64_t>(1, width));
  return rows - rows % 2;
}

// The channels-last plan: blocks of up to kChannelBlock channels, and leaves of rows (tiles of
// rows_per_tile(width) rows x one channel block), grouped like any other leaves.
struct TilePlan {
  std::int64_t width = 0;   // channels per block (the last block may be narrower)
  std::int64_t blocks = 0;  // channel blocks
  ChunkPlan rows;           // leaves are row ranges
};

inline TilePlan plan_tiles(const Geometry& g) {
  TilePlan p;
  p.width = std::min(g.channels, kChannelBlock);
  p.blocks = (g.channels + p.width - 1) / p.width;
  p.rows = plan_chunks(g.outer, rows_per_tile(p.width));
  return p;
}

// Pairwise merge of parts[0], parts[stride], ..., parts[(n-1)*stride] in a fixed tree;
// the result is left in parts[0]. n == 0 leaves an empty Moments in parts[0] (if it exists).
inline void tree_merge(Moments* parts, std::int64_t n, std::int64_t stride) {
  for (std::int64_t step = 1; step < n; step *= 2) {
    for (std::int64_t i = 0; i + step < n; i += 2 * step) {
      parts[i * stride] = merge_chunks(parts[i * stride], parts[(i + step) * stride]);
    }
  }
}

// The same fixed tree for plain sums.
inline void tree_sum(double* parts, std::int64_t n, std::int64_t stride) {
  for (std::int64_t step = 1; step < n; step *= 2) {
    for (std::int64_t i = 0; i + step < n; i += 2 * step) {
      parts[i * stride] += parts[(i + step) * stride];
    }
  }
}

// Moments of n values from their residuals r = x - mean about a first-pass mean: the corrected
// two-pass formulas mean += sum r / n and M2 = sum r^2 - (sum r)^2 / n, which remove the first
// pass's rounding error to first order.
inline Moments leaf_moments(double n, double mean, double residual_sum, double square_sum) {
  const double m2 = square_sum - residual_sum * residual_sum / n;
  return Moments{n, mean + residual_sum / n, m2 > 0 ? m2 : 0.0};
}

}  // namespace bnorm::kernels
