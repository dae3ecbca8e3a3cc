// Mutation tripwires: deliberately broken variants of the plain kernels' numerics, compiled only
// into test builds (cmake -DBNORM_MUTANTS=ON) and switched on at run time by BNORM_MUTANT=<name>.
// scripts/test runs the kernel suites once per mutant and requires each run to FAIL: a suite
// that passes with a broken kernel does not test what it claims to (docs/reliability.md).
//
//   one_pass          moments from sum x^2 - (sum x)^2 / n (the cancellation DESIGN.md forbids)
//   dropped_tail      a channel's partial last leaf loses its last value
//   unweighted_merge  chunks merged with the plain average of their means, ignoring counts
//   thread_order      as many groups as threads: the merge tree depends on OMP_NUM_THREADS
//   data_race         the tasks of the moments loops bump one shared counter without
//                     synchronization: a real data race with no effect on results, which the
//                     ThreadSanitizer pass must report (its canary)
//
// Every hook is one `if (mutant(Mutant::k...))` marked "TRIPWIRE"; in ordinary builds mutant()
// is constexpr false and the compiler removes the branch.
#pragma once

namespace bnorm::kernels {

enum class Mutant { kNone, kOnePass, kDroppedTail, kUnweightedMerge, kThreadOrder, kDataRace };

// What the data_race mutant's tasks write to without synchronization (external linkage, so the
// compiler must keep the stores).
inline long mutant_race_counter = 0;

#ifdef BNORM_MUTANTS
// The mutant named by BNORM_MUTANT (read once; kNone when unset). An unknown name aborts with
// the list of names, so that a misspelt tripwire cannot pass by failing for the wrong reason.
Mutant active_mutant();
inline bool mutant(Mutant m) {
  return active_mutant() == m;
}
#else
constexpr bool mutant(Mutant) {
  return false;
}
#endif

}  // namespace bnorm::kernels
