// The list of kernel implementations, in order of preference, and the choice among them.
//
// The shipped list is the SIMD families and then the reference (the oracle, which accepts every
// geometry). Test binaries may add implementations of their own (tests/support/kernels: the
// plain twins that carry the mutation tripwires) through kernels::testing::add_kernel; they go
// before the reference and are chosen only when forced by name.
#pragma once

#include "kernels/kernel.hpp"

namespace bnorm::kernels {

// Which form of the elementwise passes a call needs: the working-precision form of the kernel
// that applies, or the double form (data at the edge of T's range, coefficients.hpp), which
// only the reference evaluates.
enum class Form { kWorking, kDouble };

// The kernel a call on g runs: the forced one (set_kernel / BNORM_KERNEL) or the first in the
// registry that applies; the reference for Form::kDouble. Throws bnorm::Error when a forced
// kernel does not apply to g. Defined for float and double.
template <class T>
const Kernel<T>& select(const Geometry& g, Form form = Form::kWorking);

namespace testing {

// For test binaries only: adds an implementation under one name for both element types, before
// the reference. Call it before any kernel runs (from a test binary's static initialization);
// it aborts when the registry is full, the name is taken, or a kernel already ran.
void add_kernel(const Kernel<float>& f, const Kernel<double>& d);

}  // namespace testing

}  // namespace bnorm::kernels
