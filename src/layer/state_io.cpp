// BatchNorm state in safetensors: Keras names on save; Keras or PyTorch names on load.
//
// Format version 1 (metadata "bnorm.format" = "1"):
//   gamma, beta, moving_mean, moving_variance   [C], the layer's dtype, those that exist
//   renorm_mean, renorm_stddev, moving_stddev  [C], renorm only
//   num_batches_tracked                          I64 scalar (shape []), as PyTorch stores it
// Metadata also records the conventions needed to read the numbers: bnorm.momentum_convention,
// bnorm.moving_variance, bnorm.momentum, bnorm.epsilon, bnorm.channels, bnorm.dtype.
#include <fmt/format.h>

#include <fmt/ranges.h>
#include <array>
#include <optional>
#include <set>

#include "bnorm/batch_norm.hpp"
#include "bnorm/error.hpp"
#include "bnorm/safetensors.hpp"
#include "io/message.hpp"

namespace bnorm {
namespace {

constexpr const char* kFormatVersion = "1";

const char* name_of(MomentumConvention c) {
  return c == MomentumConvention::kKeras ? "keras" : "pytorch";
}
const char* name_of(MovingVariance v) {
  return v == MovingVariance::kBiased ? "biased" : "unbiased";
}

// One tensor of the state: its Keras name, its PyTorch name ("" if PyTorch has none).
struct Slot {
  const char* keras;
  const char* pytorch;
};
constexpr std::array<Slot, 7> kSlots = {{{"gamma", "weight"},
                                         {"beta", "bias"},
                                         {"moving_mean", "running_mean"},
                                         {"moving_variance", "running_var"},
                                         {"renorm_mean", ""},
                                         {"renorm_stddev", ""},
                                         {"moving_stddev", ""}}};

}  // namespace

template <class T>
void BasicBatchNorm<T>::save(const std::filesystem::path& path) const {
  const std::vector<T>* state[] = {&gamma_,           &beta_,        &moving_mean_,
                                   &moving_variance_, &renorm_mean_, &renorm_stddev_,
                                   &moving_stddev_};
  std::vector<safetensors::TensorRef> tensors;
  for (std::size_t i = 0; i < kSlots.size(); ++i) {
    if (state[i]->empty()) continue;
    tensors.push_back(
        safetensors::TensorRef::of<T>(kSlots[i].keras, std::span<const T>(*state[i])));
  }
  const std::int64_t tracked = num_batches_tracked_;
  tensors.push_back(
      safetensors::TensorRef::of<std::int64_t>("num_batches_tracked", std::span(&tracked, 1), {}));
  const std::map<std::string, std::string> metadata = {
      {"bnorm.format", kFormatVersion},
      {"bnorm.layer", "BatchNorm"},
      {"bnorm.dtype", std::string(safetensors::dtype_name(safetensors::dtype_of<T>()))},
      {"bnorm.channels", std::to_string(channels_)},
      {"bnorm.momentum_convention", name_of(options_.momentum_convention)},
      {"bnorm.moving_variance", name_of(options_.moving_variance)},
      {"bnorm.momentum",
       options_.momentum ? fmt::format("{}", *options_.momentum) : std::string("cumulative")},
      {"bnorm.epsilon", fmt::format("{}", options_.epsilon)},
  };
  safetensors::save(path, tensors, metadata);
}

template <class T>
LoadResult BasicBatchNorm<T>::load(const std::filesystem::path& path, const std::string& prefix,
                                   bool strict) {
  const safetensors::File file = safetensors::load(path);
  const auto fail = [&](const std::string& what) {
    throw Error(fmt::format("BatchNorm::load '{}': {}", path.string(), what));
  };
  const auto meta = [&](const char* key) -> const std::string* {
    const auto it = file.metadata.find(key);
    return it == file.metadata.end() ? nullptr : &it->second;
  };
  if (const auto* v = meta("bnorm.format"); v != nullptr && *v != kFormatVersion) {
    fail(fmt::format("bnorm.format = {}; expected '{}' (unexpected version)", excerpt(*v),
                     kFormatVersion));
  }
  if (const auto* v = meta("bnorm.momentum_convention");
      v != nullptr && *v != name_of(options_.momentum_convention)) {
    fail(
        fmt::format("saved with momentum_convention {}; this layer uses '{}' (the moving "
                    "statistics would be read with the other convention)",
                    excerpt(*v), name_of(options_.momentum_convention)));
  }
  if (const auto* v = meta("bnorm.moving_variance");
      v != nullptr && *v != name_of(options_.moving_variance)) {
    fail(fmt::format("saved with moving_variance {}; this layer uses '{}'", excerpt(*v),
                     name_of(options_.moving_variance)));
  }

  // Keras or PyTorch names, never both: a mix would otherwise be reported as a missing tensor
  // of whichever naming was picked (also when not strict: which tensor is "missing" would be a
  // guess).
  std::vector<std::string> keras, pytorch;
  for (const auto& slot : kSlots) {
    if (file.contains(prefix + slot.keras)) keras.push_back(prefix + slot.keras);
    if (*slot.pytorch != 0 && file.contains(prefix + slot.pytorch)) {
      pytorch.push_back(prefix + slot.pytorch);
    }
  }
  if (!keras.empty() && !pytorch.empty()) {
    fail(
        fmt::format("mixes Keras names ({}) and PyTorch names ({}); expected one naming: "
                    "gamma, beta, moving_mean, moving_variance (Keras) or weight, bias, "
                    "running_mean, running_var (PyTorch)",
                    fmt::join(keras, ", "), fmt::join(pytorch, ", ")));
  }
  // A file with neither naming (only reported as missing when not strict) is named in the
  // layer's own momentum convention.
  const bool use_pytorch = !pytorch.empty() || (keras.empty() && options_.momentum_convention ==
                                                                     MomentumConvention::kPyTorch);

  LoadResult result;
  std::vector<T>* state[] = {&gamma_,       &beta_,          &moving_mean_,  &moving_variance_,
                             &renorm_mean_, &renorm_stddev_, &moving_stddev_};
  const char* why[] = {"scale",  "center", "track_running_stats", "track_running_stats", "renorm",
                       "renorm", "renorm"};
  const std::int64_t shape[] = {channels_};
  std::vector<std::vector<T>> loaded(kSlots.size());
  std::vector<bool> present(kSlots.size(), false);
  std::set<std::string> known;
  for (std::size_t i = 0; i < kSlots.size(); ++i) {
    const char* base = use_pytorch ? kSlots[i].pytorch : kSlots[i].keras;
    const std::string name = prefix + (*base != 0 ? base : kSlots[i].keras);
    const bool wanted = !state[i]->empty();
    if (wanted) {
      known.insert(name);
      if (!strict && !file.contains(name)) {
        result.missing_keys.push_back(name);
        continue;
      }
      const auto& t = file.expect(name, safetensors::dtype_of<T>(), shape);
      loaded[i] = t.template values<T>(name);
      present[i] = true;
    } else if (strict && file.contains(name)) {
      fail(fmt::format("unexpected tensor '{}': this layer has no such state ({} is false)", name,
                       why[i]));
    }
  }
  // PyTorch (a state_dict without version metadata, as read from a file) never reports
  // num_batches_tracked missing; strict loads reset it to 0 as PyTorch 1.13 does, non-strict ones
  // keep it like every other missing tensor (as PyTorch >= 2.1 does).
  std::optional<std::int64_t> tracked;
  const std::string tracked_name = prefix + "num_batches_tracked";
  known.insert(tracked_name);
  if (file.contains(tracked_name)) {
    // PyTorch stores a 0-d tensor (shape []); some converters write shape [1]: both hold one.
    const std::int64_t one[] = {1};
    const auto& t = file.tensors.at(tracked_name).shape.empty()
                        ? file.expect(tracked_name, safetensors::Dtype::kI64, {})
                        : file.expect(tracked_name, safetensors::Dtype::kI64, one);
    tracked = t.values<std::int64_t>(tracked_name)[0];
    if (*tracked < 0) fail(fmt::format("num_batches_tracked = {}; expected >= 0", *tracked));
  } else if (strict) {
    tracked = 0;
  }
  for (const auto& [name, tensor] : file.tensors) {
    if (name.compare(0, prefix.size(), prefix) == 0 && known.count(name) == 0) {
      if (strict) {
        fail(fmt::format("unexpected tensor {}; expected only this layer's state", excerpt(name)));
      }
      result.unexpected_keys.push_back(name);
    }
  }
  // Accepted: assign everything at once.
  for (std::size_t i = 0; i < kSlots.size(); ++i) {
    if (present[i]) *state[i] = std::move(loaded[i]);
  }
  if (tracked) num_batches_tracked_ = *tracked;
  return result;
}

template void BasicBatchNorm<float>::save(const std::filesystem::path&) const;
template void BasicBatchNorm<double>::save(const std::filesystem::path&) const;
template LoadResult BasicBatchNorm<float>::load(const std::filesystem::path&, const std::string&,
                                                bool);
template LoadResult BasicBatchNorm<double>::load(const std::filesystem::path&, const std::string&,
                                                 bool);

}  // namespace bnorm
