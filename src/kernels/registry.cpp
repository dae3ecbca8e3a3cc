// The kernel registry: every implementation, in order of preference, each with a name that
// appears in errors and in benchmark output. The reference is last and accepts everything
// (oneDNN's cpu_batch_normalization_list.cpp has the same shape).
#include "kernels/registry.hpp"

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "bnorm/error.hpp"
#include "bnorm/kernels.hpp"
#include "kernels/reference/reference.hpp"
#include "kernels/simd/simd.hpp"

namespace bnorm::kernels {
namespace {

bool always(const Geometry&) {
  return true;
}

// The shipped kernels plus room for a few that test binaries add (testing::add_kernel).
inline constexpr std::size_t kMaxKernels = 8;

template <class T>
struct List {
  std::array<Kernel<T>, kMaxKernels> kernels;
  std::size_t size;
};

template <class T>
constexpr List<T> shipped() {
  return List<T>{{{
                     {.name = "simd:channels_last",
                      .applies = simd::channels_last_applies,
                      .moments = simd::channels_last_moments<T>,
                      .scales = simd::scales<T>,
                      .normalize = simd::channels_last_normalize<T>,
                      .backward_sums = simd::channels_last_backward_sums<T>,
                      .backward_input = simd::channels_last_backward_input<T>},
                     {.name = "simd:channels_first",
                      .applies = simd::channels_first_applies,
                      .moments = simd::channels_first_moments<T>,
                      .scales = simd::scales<T>,
                      .normalize = simd::channels_first_normalize<T>,
                      .backward_sums = simd::channels_first_backward_sums<T>,
                      .backward_input = simd::channels_first_backward_input<T>,
                      .forward_training = simd::channels_first_forward_training<T>,
                      .backward = simd::channels_first_backward<T>},
                     {.name = "reference",
                      .applies = always,
                      .moments = reference::moments<T>,
                      .scales = reference::scales<T>,
                      .normalize = reference::normalize<T>,
                      .backward_sums = reference::backward_sums<T>,
                      .backward_input = reference::backward_input<T>},
                 }},
                 3};
}

// Written only before any kernel runs (testing::add_kernel), read without locks afterwards.
template <class T>
constinit List<T> registry = shipped<T>();

// Set by the first kernel choice: from then on the list is fixed.
std::atomic<bool> sealed{false};

// The forced kernel ("" = automatic); initialized from BNORM_KERNEL on first use. The index is
// what every call reads (one atomic load, no lock, no string copy: per-call overhead matters for
// tiny tensors); the name, under the mutex, is what forced_kernel() reports.
struct Forced {
  std::mutex mutex;
  std::string name;
  std::atomic<int> index{-1};  // position in the registry, -1 = automatic
};

std::string all_names() {
  std::string names;
  for (std::size_t i = 0; i < registry<float>.size; ++i) {
    names += fmt::format("{}'{}'", names.empty() ? "" : ", ", registry<float>.kernels[i].name);
  }
  return names;
}

// The registry position of `name`, -1 for "" (automatic); throws for an unknown name.
int index_of(std::string_view name, std::string_view source) {
  if (name.empty()) return -1;
  for (std::size_t i = 0; i < registry<float>.size; ++i) {
    if (name == registry<float>.kernels[i].name) return static_cast<int>(i);
  }
  throw Error(fmt::format("{} = '{}': unknown kernel; expected one of {} (or empty for automatic)",
                          source, name, all_names()));
}

Forced& forced() {
  static Forced* f = [] {
    sealed.store(true, std::memory_order_release);
    auto* state = new Forced;
    if (const char* env = std::getenv("BNORM_KERNEL"); env != nullptr) {
      state->index = index_of(env, "BNORM_KERNEL");
      state->name = env;
    }
    return state;
  }();
  return *f;
}

}  // namespace

template <class T>
const Kernel<T>& select(const Geometry& g, Form form) {
  const List<T>& list = registry<T>;
  const Kernel<T>& reference = list.kernels[list.size - 1];
  const int at = forced().index.load(std::memory_order_acquire);
  if (form == Form::kDouble) return reference;
  if (at < 0) {
    for (std::size_t i = 0; i < list.size; ++i) {
      if (list.kernels[i].applies(g)) return list.kernels[i];
    }
    return reference;  // unreachable: the reference applies to everything
  }
  const auto& k = list.kernels[static_cast<std::size_t>(at)];
  if (k.applies(g)) return k;
  throw Error(fmt::format(
      "kernel '{}' (forced by BNORM_KERNEL or set_kernel) does not apply to geometry "
      "{{outer={}, channels={}, inner={}}}; expected a geometry it handles or automatic choice",
      k.name, g.outer, g.channels, g.inner));
}

template const Kernel<float>& select<float>(const Geometry&, Form);
template const Kernel<double>& select<double>(const Geometry&, Form);

namespace testing {

void add_kernel(const Kernel<float>& f, const Kernel<double>& d) {
  const auto fail = [&](const char* why) {
    std::fprintf(stderr, "bnorm::kernels::testing::add_kernel('%s'): %s\n", f.name, why);
    std::abort();
  };
  if (sealed.load(std::memory_order_acquire)) fail("a kernel already ran; add kernels first");
  if (registry<float>.size == kMaxKernels) fail("the registry is full");
  if (std::string_view(f.name) != d.name) fail("the float and double kernels differ in name");
  for (std::size_t i = 0; i < registry<float>.size; ++i) {
    if (std::string_view(f.name) == registry<float>.kernels[i].name) fail("the name is taken");
  }
  // Before the reference, which stays last.
  const auto insert = [](auto& list, const auto& kernel) {
    list.kernels[list.size] = list.kernels[list.size - 1];
    list.kernels[list.size - 1] = kernel;
    ++list.size;
  };
  insert(registry<float>, f);
  insert(registry<double>, d);
}

}  // namespace testing
}  // namespace bnorm::kernels

namespace bnorm {

std::vector<std::string> kernel_names() {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < kernels::registry<float>.size; ++i) {
    names.emplace_back(kernels::registry<float>.kernels[i].name);
  }
  return names;
}

void set_kernel(std::string_view name) {
  auto& f = kernels::forced();
  const int index = kernels::index_of(name, "kernel name");
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
  return is_double ? kernels::select<double>(g).name : kernels::select<float>(g).name;
}

}  // namespace bnorm
