// Mutation tripwires: deliberately broken variants of the plain kernels' numerics (test code:
// tests/support/kernels), switched on at run time by BNORM_MUTANT=<name>. scripts/test runs the
// kernel suites once per mutant and requires each run to FAIL: a suite that passes with a
// broken kernel does not test what it claims to (docs/reliability.md).
//
//   one_pass          moments from sum x^2 - (sum x)^2 / n (the cancellation DESIGN.md forbids)
//   dropped_tail      a channel's partial last leaf loses its last value
//   unweighted_merge  chunks merged with the plain average of their means, ignoring counts
//   thread_order      as many groups as threads: the merge tree depends on OMP_NUM_THREADS
//   data_race         the tasks of the moments loops bump one shared counter without
//                     synchronization: a real data race with no effect on results, which the
//                     ThreadSanitizer pass must report (its canary)
//
// Every hook is one `if (mutant(Mutant::k...))` marked "TRIPWIRE", in the plain kernels or in
// the chunking helpers below, which wrap the library's (src/kernels/chunking.hpp): the library
// itself carries no tripwire.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "kernels/chunking.hpp"

namespace bnorm::kernels::plain {

enum class Mutant { kNone, kOnePass, kDroppedTail, kUnweightedMerge, kThreadOrder, kDataRace };

// What the data_race mutant's tasks write to without synchronization (external linkage, so the
// compiler must keep the stores).
inline long mutant_race_counter = 0;

// The mutant named by BNORM_MUTANT (read once; kNone when unset). An unknown name aborts with
// the list of names, so that a misspelt tripwire cannot pass by failing for the wrong reason.
Mutant active_mutant();
inline bool mutant(Mutant m) {
  return active_mutant() == m;
}

// chunking.hpp's plan_chunks, with the thread_order tripwire.
inline ChunkPlan plan_chunks_tripwired(std::int64_t count, std::int64_t leaf) {
  // TRIPWIRE: groups from the thread count make the merge tree depend on it.
  if (!mutant(Mutant::kThreadOrder)) return plan_chunks(count, leaf);
  ChunkPlan p;
  p.leaf = leaf;
  p.leaves = (count + leaf - 1) / leaf;
  const std::int64_t max_groups = omp_get_max_threads();
  p.leaves_per_group = std::max<std::int64_t>(1, (p.leaves + max_groups - 1) / max_groups);
  p.groups = (p.leaves + p.leaves_per_group - 1) / p.leaves_per_group;
  return p;
}

// chunking.hpp's plan_tiles, on plan_chunks_tripwired.
inline TilePlan plan_tiles_tripwired(const Geometry& g) {
  TilePlan p = plan_tiles(g);
  p.rows = plan_chunks_tripwired(g.outer, rows_per_tile(p.width));
  return p;
}

// chunking.hpp's leaf_end, with the dropped_tail tripwire.
inline std::int64_t leaf_end_tripwired(std::int64_t begin, std::int64_t leaf, std::int64_t count) {
  const std::int64_t end = leaf_end(begin, leaf, count);
  // TRIPWIRE: a partial last leaf drops its last value, as a lost vector tail would.
  if (mutant(Mutant::kDroppedTail) && end - begin < leaf && end - begin > 1) return end - 1;
  return end;
}

// chunking.hpp's merge_chunks, with the unweighted_merge tripwire.
inline Partial merge_chunks_tripwired(const Partial& a, const Partial& b) {
  if (b.count == 0) return a;
  if (a.count == 0) return b;
  MergeWeights w = merge_weights(a.count, b.count);
  // TRIPWIRE: the plain average of the means, as if the chunks had equal counts.
  if (mutant(Mutant::kUnweightedMerge)) w.b_share = 0.5;
  return merge_weighted(a, b, w);
}

// chunking.hpp's tree_merge, on merge_chunks_tripwired.
inline void tree_merge_tripwired(Partial* parts, std::int64_t n, std::int64_t stride) {
  for (std::int64_t step = 1; step < n; step *= 2) {
    for (std::int64_t i = 0; i + step < n; i += 2 * step) {
      parts[i * stride] = merge_chunks_tripwired(parts[i * stride], parts[(i + step) * stride]);
    }
  }
}

}  // namespace bnorm::kernels::plain
