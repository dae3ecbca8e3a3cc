// How the optimized kernels cut each channel's values into chunks, and merge the chunks.
//
// Every boundary here is a function of the geometry alone, never of the thread count: a thread
// only decides *who* computes a chunk, not *what* a chunk is, and partial results are merged in
// one fixed tree. That is why results are bitwise identical for any OMP_NUM_THREADS.
//
// Glossary: the pieces of a channel (x[o][c][i], M = outer * inner values per channel, in logical
// order o-major, i-minor), used with these meanings in every kernel file:
//   run    - values of one channel that are contiguous in memory: the `inner` values x[o][c][.]
//            of one o in the channels-first layout (a channel is `outer` runs, C * inner values
//            apart); a single value in the channels-last layout (inner == 1).
//   leaf   - the unit of the statistics: consecutive values of one channel (channels-first:
//            kLeafValues of them, across runs if needed) small enough to stay in cache between
//            the two passes of the moments; merged with Chan's formula.
//   tile   - the channels-last leaf: rows_per_tile(width) consecutive rows x one block of
//            channels (its rows are the leaf; every channel of a tile has the same count).
//   group  - consecutive leaves (or tiles) handled by one task, merged left to right. The number
//            of groups per channel is capped (kMaxGroups), so scratch memory grows with C but not
//            with N*H*W; the groups of a channel merge in a fixed tree (tree_merge).
//   block  - channels handled together by one channels-last (or short-run) task: up to
//            kChannelBlock channels, or a whole row when rows are wide (wide_rows). A row block
//            (kRowBlock, simd/wide_rows-inl.h) is the rows one update of the per-channel
//            accumulators takes.
//   strip  - one vector of channels (Lanes of them) walked down the rows of a tile when rows are
//            narrow, with the accumulators in registers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "bnorm/geometry.hpp"
#include "bnorm/phases.hpp"

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
// - narrow rows (C * sizeof(T) < kWideRowBytes): strips walked down the rows with register
//   accumulators (simd/channels_last-inl.h);
// - wide rows: whole rows in memory order, kRowBlock rows per update of per-channel accumulators.
//   Walking a strip down rows that are a multiple of 4 KiB apart (C = 1024 floats) maps every row
//   to the same L1 set, so wide rows are read in memory order.
// Strips win for rows of a few vectors, the row-major traversal from 128-byte rows on
// (docs/kernels.md has the measurements).
inline constexpr std::int64_t kWideRowBytes = 128;

// Whether channels-last rows of T are wide (read whole, in memory order) or narrow (strips).
template <class T>
bool wide_rows(const Geometry& g) {
  return g.channels * static_cast<std::int64_t>(sizeof(T)) >= kWideRowBytes;
}

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
  p.leaves_per_group = std::max<std::int64_t>(1, (p.leaves + kMaxGroups - 1) / kMaxGroups);
  p.groups = (p.leaves + p.leaves_per_group - 1) / p.leaves_per_group;
  return p;
}

// The end of the leaf that starts at `begin`: every leaf is full but a channel's last.
inline std::int64_t leaf_end(std::int64_t begin, std::int64_t leaf, std::int64_t count) {
  return std::min(count, begin + leaf);
}

// A chunk's moments inside the kernels, with the mean carried as an unevaluated sum
// mean + mean_lo (double-double). Chan's merge takes the difference of two chunks' means; at
// |mean| >> std, a mean rounded to double is off by up to ulp(mean) / 2, and the std-sized
// difference keeps that error (fp64 at mean 1e8, std 1: 8e-10 relative error in the variance
// after 8 leaves). With the rounding error carried along, the difference is exact to far below
// ulp(std), and the final mean is mean + mean_lo rounded once.
struct Partial {
  double count = 0;
  double mean = 0;     // leading part of the mean
  double mean_lo = 0;  // the rest: the mean is mean + mean_lo
  double m2 = 0;
};

inline Moments to_moments(const Partial& p) {
  return Moments{p.count, p.mean + p.mean_lo, p.m2};
}

// s + e == a + b exactly, s = fl(a + b) (Knuth's TwoSum; needs strict IEEE additions, which the
// build keeps: no -ffast-math). e = 0 when s overflows, as a + b would.
inline void two_sum(double a, double b, double& s, double& e) {
  s = a + b;
  const double bb = s - a;
  e = (a - (s - bb)) + (b - bb);
  if (!std::isfinite(s)) e = 0;
}

// Moments of n values from their residuals r = x - mean about a first-pass mean: the corrected
// two-pass formulas mean += sum r / n and M2 = sum r^2 - (sum r)^2 / n, which remove the first
// pass's rounding error to first order. The corrected mean is kept exactly as a pair.
inline Partial leaf_moments(double n, double mean, double residual_sum, double square_sum) {
  const double m2 = square_sum - residual_sum * residual_sum / n;
  Partial p{n, 0, 0, m2 > 0 ? m2 : 0.0};
  two_sum(mean, residual_sum / n, p.mean, p.mean_lo);
  return p;
}

// Chan's merge (phases.hpp) of chunks with counts na and nb > 0, split in two: the ratios of the
// counts, which chunks of the same rows (or groups of the same leaves) share across channels,
// and the per-channel part. Two divisions per pair of chunks instead of two per channel.
struct MergeWeights {
  double count;    // na + nb
  double b_share;  // nb / (na + nb)
  double product;  // na * nb / (na + nb)
};

inline MergeWeights merge_weights(double na, double nb) {
  const double n = na + nb;
  return MergeWeights{n, nb / n, na * nb / n};
}

// a merged with chunk b, given the chunks' merge_weights. No branches, so the SIMD kernels run
// the same operations in vectors. delta == 0 keeps the mean pair and adds the M2s exactly.
inline Partial merge_weighted(const Partial& a, const Partial& b, const MergeWeights& w) {
  // b.mean - a.mean is exact when the means are within a factor 2 (Sterbenz): the case |mean| >>
  // std, where it matters.
  const double delta = (b.mean - a.mean) + (b.mean_lo - a.mean_lo);
  Partial p{w.count, 0, 0, (a.m2 + b.m2) + (delta * delta) * w.product};
  double error = 0;
  two_sum(a.mean, delta * w.b_share, p.mean, error);
  p.mean_lo = a.mean_lo + error;
  return p;
}

// Partial moments of a block of channels as structure of arrays (the SIMD channels-last kernels):
// channel k's at [k] of each array; all of them have one count, kept beside.
struct PartialRows {
  double* mean;
  double* mean_lo;
  double* m2;
  PartialRows at(std::int64_t offset) const {
    return PartialRows{mean + offset, mean_lo + offset, m2 + offset};
  }
};

// Chan's merge of two chunks' moments, the one every kernel uses between chunks.
inline Partial merge_chunks(const Partial& a, const Partial& b) {
  if (b.count == 0) return a;
  if (a.count == 0) return b;
  return merge_weighted(a, b, merge_weights(a.count, b.count));
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
// the result is left in parts[0]. n == 0 leaves an empty Partial in parts[0] (if it exists).
inline void tree_merge(Partial* parts, std::int64_t n, std::int64_t stride) {
  for (std::int64_t step = 1; step < n; step *= 2) {
    for (std::int64_t i = 0; i + step < n; i += 2 * step) {
      parts[i * stride] = merge_chunks(parts[i * stride], parts[(i + step) * stride]);
    }
  }
}

// tree_sum for every channel c < C of parts[i * C + c], a row of C channels at a time (the same
// additions in the same order): walking one channel down the groups strides C values per access,
// a cache (and TLB) miss each for wide rows.
inline void tree_sum_rows(double* parts, std::int64_t n, std::int64_t C) {
  for (std::int64_t step = 1; step < n; step *= 2) {
    for (std::int64_t i = 0; i + step < n; i += 2 * step) {
      double* a = parts + i * C;
      const double* b = parts + (i + step) * C;
      for (std::int64_t c = 0; c < C; ++c) a[c] += b[c];
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

}  // namespace bnorm::kernels
