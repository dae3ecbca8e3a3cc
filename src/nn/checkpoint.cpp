// Trainer checkpoints: the complete training state in one safetensors file, so that a resumed
// run continues bitwise identically (parameters, moving statistics, optimizer velocities, step,
// data order; the initialization RNG is not needed after construction).
#include <bit>

#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/nn/trainer.hpp"
#include "bnorm/safetensors.hpp"

namespace bnorm::nn {

namespace st = bnorm::safetensors;

void Trainer::save_checkpoint(const std::filesystem::path& path,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<st::TensorRef> refs;
  for (const auto& p : parameters_) {
    refs.push_back(st::TensorRef::of<float>("model." + p.name, p.value, p.shape));
  }
  for (const auto& b : mlp_.net.buffers()) {
    refs.push_back(st::TensorRef::of<float>("model." + b.name, b.value, b.shape));
  }
  for (const auto& v : sgd_.state()) {
    refs.push_back(st::TensorRef::of<float>("optimizer." + v.name, v.value, v.shape));
  }
  const std::array<std::int64_t, 1> step{step_};
  const auto& bs = batcher_.state();
  const std::array<std::int64_t, 3> batcher{std::bit_cast<std::int64_t>(bs.seed), bs.epoch,
                                            bs.cursor};
  refs.push_back(st::TensorRef::of<std::int64_t>("trainer.step", step));
  refs.push_back(st::TensorRef::of<std::int64_t>("trainer.batcher", batcher));
  auto meta = metadata;
  meta["format"] = kCheckpointFormat;
  st::save(path, refs, meta);
}

std::map<std::string, std::string> Trainer::load_checkpoint(const std::filesystem::path& path) {
  const st::File file = st::load(path);
  const auto format = file.metadata.find("format");
  if (format == file.metadata.end() || format->second != kCheckpointFormat) {
    // The value comes from the file and may be megabytes: show its start.
    constexpr std::size_t kShown = 64;
    const std::string got = format == file.metadata.end() ? std::string("(none)")
                            : format->second.size() <= kShown
                                ? format->second
                                : fmt::format("{}... ({} bytes)", format->second.substr(0, kShown),
                                              format->second.size());
    throw Error(fmt::format("{}: metadata 'format': expected '{}', got '{}'", path.string(),
                            kCheckpointFormat, got));
  }
  // Check everything before changing anything, so that a bad file leaves the trainer intact.
  auto fetch = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
    return file.expect(name, st::Dtype::kF32, shape).values<float>(name);
  };
  std::vector<std::pair<std::span<float>, std::vector<float>>> restore;
  for (const auto& p : parameters_)
    restore.emplace_back(p.value, fetch("model." + p.name, p.shape));
  for (const auto& b : mlp_.net.buffers()) {
    restore.emplace_back(b.value, fetch("model." + b.name, b.shape));
  }
  for (const auto& v : sgd_.state()) {
    restore.emplace_back(v.value, fetch("optimizer." + v.name, v.shape));
  }
  const std::array<std::int64_t, 1> one{1};
  const std::array<std::int64_t, 1> three{3};
  const auto step =
      file.expect("trainer.step", st::Dtype::kI64, one).values<std::int64_t>("trainer.step");
  const auto bs = file.expect("trainer.batcher", st::Dtype::kI64, three)
                      .values<std::int64_t>("trainer.batcher");
  if (std::bit_cast<std::uint64_t>(bs[0]) != config_.seed) {
    throw Error(fmt::format("{}: trainer.batcher seed: expected {} (--seed), got {}", path.string(),
                            config_.seed, std::bit_cast<std::uint64_t>(bs[0])));
  }
  if (step[0] < 0) {
    throw Error(fmt::format("{}: trainer.step: expected >= 0, got {}", path.string(), step[0]));
  }
  batcher_.set_state({config_.seed, bs[1], bs[2]});
  for (auto& [dst, values] : restore) std::copy(values.begin(), values.end(), dst.begin());
  step_ = step[0];
  return file.metadata;
}

}  // namespace bnorm::nn
