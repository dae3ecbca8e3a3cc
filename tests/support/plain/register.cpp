// Registers the plain kernels in every test binary that links this library (an OBJECT library,
// so this static initializer is always linked in): the kernel tests iterate over kernel_names()
// and so run the plain twins and their mutation tripwires beside the shipped kernels.
#include "kernels/reference/reference.hpp"
#include "kernels/registry.hpp"
#include "plain/plain.hpp"

namespace bnorm::kernels::plain {
namespace {

// The plain families take the reference's scalar scales: the per-channel scale is not what
// they twin.
template <class T>
constexpr Kernel<T> channels_last() {
  return {.name = "plain:channels_last",
          .applies = channels_last_applies,
          .moments = channels_last_moments<T>,
          .scales = reference::scales<T>,
          .normalize = channels_last_normalize<T>,
          .backward_sums = channels_last_backward_sums<T>,
          .backward_input = channels_last_backward_input<T>};
}

template <class T>
constexpr Kernel<T> channels_first() {
  return {.name = "plain:channels_first",
          .applies = channels_first_applies,
          .moments = channels_first_moments<T>,
          .scales = reference::scales<T>,
          .normalize = channels_first_normalize<T>,
          .backward_sums = channels_first_backward_sums<T>,
          .backward_input = channels_first_backward_input<T>};
}

[[maybe_unused]] const bool registered = [] {
  testing::add_kernel(channels_last<float>(), channels_last<double>());
  testing::add_kernel(channels_first<float>(), channels_first<double>());
  return true;
}();

}  // namespace
}  // namespace bnorm::kernels::plain
