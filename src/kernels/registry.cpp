// The kernel registry: every implementation, in order of preference, each with a name that
// appears in errors and in benchmark output. The reference is last and accepts everything
// (oneDNN's cpu_batch_normalization_list.cpp has the same shape).
#include "kernels/registry.hpp"

#include <fmt/format.h>

#include <array>
#include <cstdlib>
#include <mutex>
#include <string>

#include "bnorm/error.hpp"
#include "bnorm/kernels.hpp"
#include "kernels/plain/plain.hpp"
#include "kernels/reference/reference.hpp"

namespace bnorm::kernels {
namespace {

bool always(const Geometry&) {
  return true;
}

template <class T>
constexpr std::array<Kernel<T>, 3> kRegistry = {{
    {"plain:channels_last", plain::channels_last_applies, plain::channels_last_moments<T>,
     plain::channels_last_normalize<T>, plain::channels_last_backward_sums<T>,
     plain::channels_last_backward_input<T>},
    {"plain:channels_first", plain::channels_first_applies, plain::channels_first_moments<T>,
     plain::channels_first_normalize<T>, plain::channels_first_backward_sums<T>,
     plain::channels_first_backward_input<T>},
    {"reference", always, reference::moments<T>, reference::normalize<T>,
     reference::backward_sums<T>, reference::backward_input<T>},
}};

// The forced kernel's name ("" = automatic); initialized from BNORM_KERNEL on first use.
struct Forced {
  std::mutex mutex;
  std::string name;
};

std::string all_names() {
  std::string names;
  for (const auto& k : kRegistry<float>)
    names += fmt::format("{}'{}'", names.empty() ? "" : ", ", k.name);
  return names;
}

void check_name(std::string_view name, std::string_view source) {
  if (name.empty()) return;
  for (const auto& k : kRegistry<float>) {
    if (name == k.name) return;
  }
  throw Error(fmt::format("{} = '{}': unknown kernel; expected one of {} (or empty for automatic)",
                          source, name, all_names()));
}

Forced& forced() {
  static Forced* f = [] {
    auto* state = new Forced;
    if (const char* env = std::getenv("BNORM_KERNEL"); env != nullptr) {
      check_name(env, "BNORM_KERNEL");
      state->name = env;
    }
    return state;
  }();
  return *f;
}

template <class T>
const Kernel<T>& select_impl(const Geometry& g) {
  const std::string name = forced_kernel();
  for (const auto& k : kRegistry<T>) {
    if (!name.empty() && name != k.name) continue;
    if (k.applies(g)) return k;
    if (name.empty()) continue;
    throw Error(fmt::format(
        "kernel '{}' (forced by BNORM_KERNEL or set_kernel) does not apply to geometry "
        "{{outer={}, channels={}, inner={}}}; expected a geometry it handles or automatic choice",
        name, g.outer, g.channels, g.inner));
  }
  // Unreachable: the reference applies to everything and names are checked when set.
  throw Error(fmt::format("kernel '{}' not found", name));
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
  kernels::check_name(name, "kernel name");
  auto& f = kernels::forced();
  const std::lock_guard lock(f.mutex);
  f.name = std::string(name);
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
