// Kernel selection: which implementation runs, by name (for tests, benchmarks and debugging).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "bnorm/geometry.hpp"

namespace bnorm {

// The implementations compiled in, in order of preference; "reference" (the scalar oracle with
// double accumulation) is always last and accepts every geometry.
std::vector<std::string> kernel_names();

// Forces one implementation by name ("" restores automatic choice). The environment variable
// BNORM_KERNEL sets the initial value (BNORM_KERNEL=reference forces the oracle).
// Throws bnorm::Error for an unknown name. A forced kernel that does not apply to a geometry
// makes calls on that geometry throw.
void set_kernel(std::string_view name);
[[nodiscard]] std::string forced_kernel();

// The name of the implementation that a call on g with this element size would run.
[[nodiscard]] std::string kernel_for(const Geometry& g, bool is_double);

// The instruction set the SIMD kernels dispatch to on this CPU (Highway's target name, e.g.
// "AVX3", "AVX2", "SSE4"), for benchmark labels and bug reports.
[[nodiscard]] std::string simd_target();

// RAII: forces a kernel for a scope (tests and benchmarks), then restores the previous choice.
class ScopedKernel {
 public:
  explicit ScopedKernel(std::string_view name) : previous_(forced_kernel()) { set_kernel(name); }
  ~ScopedKernel() { set_kernel(previous_); }
  ScopedKernel(const ScopedKernel&) = delete;
  ScopedKernel& operator=(const ScopedKernel&) = delete;

 private:
  std::string previous_;
};

}  // namespace bnorm
