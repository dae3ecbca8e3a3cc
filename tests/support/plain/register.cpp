// Registers the plain kernels in every test binary that links this library (an OBJECT library,
// so this static initializer is always linked in): the kernel tests iterate over kernel_names()
// and so run the plain twins and their mutation tripwires beside the shipped kernels.
#include "kernels/registry.hpp"
#include "plain/plain.hpp"

namespace bnorm::kernels::plain {
namespace {

template <class T>
constexpr Kernel<T> channels_last() {
  return {"plain:channels_last",
          channels_last_applies,
          channels_last_moments<T>,
          channels_last_normalize<T>,
          channels_last_backward_sums<T>,
          channels_last_backward_input<T>,
          nullptr,
          nullptr};
}

template <class T>
constexpr Kernel<T> channels_first() {
  return {"plain:channels_first",
          channels_first_applies,
          channels_first_moments<T>,
          channels_first_normalize<T>,
          channels_first_backward_sums<T>,
          channels_first_backward_input<T>,
          nullptr,
          nullptr};
}

[[maybe_unused]] const bool registered = [] {
  testing::add_kernel(channels_last<float>(), channels_last<double>());
  testing::add_kernel(channels_first<float>(), channels_first<double>());
  return true;
}();

}  // namespace
}  // namespace bnorm::kernels::plain
