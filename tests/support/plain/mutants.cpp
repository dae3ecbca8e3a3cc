// The run-time switch of the mutation tripwires (mutants.hpp).
#include "plain/mutants.hpp"

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace bnorm::kernels::plain {
namespace {

struct Named {
  std::string_view name;
  Mutant mutant;
};
constexpr Named kMutants[] = {{"one_pass", Mutant::kOnePass},
                              {"dropped_tail", Mutant::kDroppedTail},
                              {"unweighted_merge", Mutant::kUnweightedMerge},
                              {"thread_order", Mutant::kThreadOrder},
                              {"data_race", Mutant::kDataRace}};

Mutant from_environment() {
  const char* env = std::getenv("BNORM_MUTANT");
  if (env == nullptr || *env == '\0') return Mutant::kNone;
  for (const auto& m : kMutants) {
    if (m.name == env) {
      std::fprintf(stderr,
                   "bnorm: TRIPWIRE mutant '%s' is active: the plain kernels are broken on "
                   "purpose\n",
                   env);
      return m.mutant;
    }
  }
  std::fprintf(stderr,
               "bnorm: BNORM_MUTANT = '%s'; expected one of one_pass, dropped_tail, "
               "unweighted_merge, thread_order, data_race\n",
               env);
  std::abort();
}

}  // namespace

Mutant active_mutant() {
  static const Mutant active = from_environment();
  return active;
}

}  // namespace bnorm::kernels::plain
