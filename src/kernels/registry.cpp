// The kernel registry: every implementation, in order of preference, each with a name that
// appears in errors and in benchmark output. The reference is last and accepts everything
// (oneDNN's cpu_batch_normalization_list.cpp has the same shape).
#include "kernels/registry.hpp"

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "bnorm/error.hpp"
#include "bnorm/kernels.hpp"
#include "kernels/plain/plain.hpp"
#include "kernels/reference/reference.hpp"
#include "kernels/simd/simd.hpp"

namespace bnorm::kernels {
namespace {

bool always(const Geometry&) {
  return true;
}

template <class T>
constexpr std::array<Kernel<T>, 5> kRegistry = {{
    {"simd:channels_last", simd::channels_last_applies, simd::channels_last_moments<T>,
     simd::channels_last_normalize<T>, simd::channels_last_backward_sums<T>,
     simd::channels_last_backward_input<T>, nullptr, nullptr},
    {"simd:channels_first", simd::channels_first_applies, simd::channels_first_moments<T>,
     simd::channels_first_normalize<T>, simd::channels_first_backward_sums<T>,
     simd::channels_first_backward_input<T>, simd::channels_first_forward_training<T>,
     simd::channels_first_backward<T>},
    {"plain:channels_last", plain::channels_last_applies, plain::channels_last_moments<T>,
     plain::channels_last_normalize<T>, plain::channels_last_backward_sums<T>,
     plain::channels_last_backward_input<T>, nullptr, nullptr},
    {"plain:channels_first", plain::channels_first_applies, plain::channels_first_moments<T>,
     plain::channels_first_normalize<T>, plain::channels_first_backward_sums<T>,
     plain::channels_first_backward_input<T>, nullptr, nullptr},
    {"reference", always, reference::moments<T>, reference::normalize<T>,
     reference::backward_sums<T>, reference::backward_input<T>, nullptr, nullptr},
}};

// The forced kernel ("" = automatic); initialized from BNORM_KERNEL on first use. The index is
// what every call reads (one atomic load, no lock, no string copy: per-call overhead matters for
// tiny tensors); the name, under the mutex, is what forced_kernel() reports.
struct Forced {
  std::mutex mutex;
  std::string name;
  std::atomic<int> index{-1};  // position in kRegistry, -1 = automatic
};

std::string all_names() {
  std::string names;
  for (const auto& k : kRegistry<float>)
    names += fmt::format("{}'{}'", names.empty() ? "" : ", ", k.name);
  return names;
}

// The registry position of `name`, -1 for "" (automatic); throws for an unknown name.
int index_of(std::string_view name, std::string_view source) {
  if (name.empty()) return -1;
  for (std::size_t i = 0; i < kRegistry<float>.size(); ++i) {
    if (name == kRegistry<float>[i].name) return static_cast<int>(i);
  }
  throw Error(fmt::format("{} = '{}': unknown kernel; expected one of {} (or empty for automatic)",
                          source, name, all_names()));
}

Forced& forced() {
  static Forced* f = [] {
    auto* state = new Forced;
    if (const char* env = std::getenv("BNORM_KERNEL"); env != nullptr) {
      state->index = index_of(env, "BNORM_KERNEL");
      state->name = env;
    }
    return state;
  }();
  return *f;
}

template <class T>
const Kernel<T>& select_impl(const Geometry& g) {
  const int at = forced().index.load(std::memory_order_acquire);
  if (at < 0) {
    for (const auto& k : kRegistry<T>) {
      if (k.applies(g)) return k;
    }
    // Unreachable: the reference applies to everything.
  }
  const auto& k = kRegistry<T>[static_cast<std::size_t>(at < 0 ? kRegistry<T>.size() - 1 : at)];
  if (k.applies(g)) return k;
  throw Error(fmt::format(
      "kernel '{}' (forced by BNORM_KERNEL or set_kernel) does not apply to geometry "
      "{{outer={}, channels={}, inner={}}}; expected a geometry it handles or automatic choice",
      k.name, g.outer, g.channels, g.inner));
}

}  // namespace

const Kernel<float>& select_float(const Geometry& g) {
  return select_impl<float>(g);
}
const Kernel<double>& select_double(const Geometry& g) {
  return select_impl<double>(g);
}

}  // namespace bnorm::kernels

namespace bnorm {

std::vector<std::string> kernel_names() {
  std::vector<std::string> names;
  for (const auto& k : kernels::kRegistry<float>) names.emplace_back(k.name);
  return names;
}

void set_kernel(std::string_view name) {
  const int index = kernels::index_of(name, "kernel name");
  auto& f = kernels::forced();
  const std::lock_guard lock(f.mutex);
  f.name = std::string(name);
  f.index.store(index, std::memory_order_release);
}

std::string forced_kernel() {
  auto& f = kernels::forced();
  const std::lock_guard lock(f.mutex);
  return f.name;
}

std::string kernel_for(const Geometry& g, bool is_double) {
  return is_double ? kernels::select_double(g).name : kernels::select_float(g).name;
}

}  // namespace bnorm
