// Steps per second of the paper's MLP (784-100-100-100-10, sigmoid, batch 60, plain SGD) in
// bnorm's training engine, with and without batch norm before each sigmoid. The PyTorch twin is
// bench/baselines/torch_mlp_steps.py: same network, batch, initialization, threads, and data
// already in memory, so that only the training step is timed.
// Prints one JSON object per configuration: {"framework", "bn", "threads", "steps_per_second"}.
// Usage: bnorm-train-bench [--threads N] [--seconds S] [--batch B]
#include <omp.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "bnorm/nn/trainer.hpp"

namespace nn = bnorm::nn;

namespace {

// 64 batches of random pixels and labels, cycled (the torch script does the same).
nn::Dataset random_dataset(std::int64_t examples) {
  nn::Dataset d;
  d.images.count = examples;
  d.images.rows = 28;
  d.images.cols = 28;
  d.images.pixels.resize(static_cast<std::size_t>(examples * 784));
  d.labels.resize(static_cast<std::size_t>(examples));
  nn::Rng rng(3);
  for (auto& p : d.images.pixels) p = static_cast<std::uint8_t>(rng.below(256));
  for (auto& l : d.labels) l = static_cast<std::uint8_t>(rng.below(10));
  return d;
}

double measure(bool bn, double seconds, std::int64_t batch) {
  const nn::Dataset data = random_dataset(64 * batch);
  nn::TrainConfig config;
  config.model.bn = bn ? nn::BnPlacement::kBefore : nn::BnPlacement::kNone;
  config.sgd.learning_rate = 0.1;
  config.batch = batch;
  const bnorm::LocalCommunicator comm;
  nn::Trainer trainer(config, data, comm);
  for (int i = 0; i < 50; ++i) (void)trainer.step();  // warm-up
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  std::int64_t steps = 0;
  double elapsed = 0;
  do {
    for (int i = 0; i < 50; ++i) (void)trainer.step();
    steps += 50;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < seconds);
  return static_cast<double>(steps) / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  double seconds = 3;
  std::int64_t batch = 60;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (flag == "--seconds")
      seconds = std::atof(argv[i + 1]);
    else if (flag == "--batch")
      batch = std::atoll(argv[i + 1]);
    else {
      fmt::print(stderr,
                 "bnorm-train-bench: unknown flag '{}'; expected --threads, --seconds or --batch\n",
                 flag);
      return 2;
    }
  }
  omp_set_num_threads(threads);
  for (bool bn : {false, true}) {
    const double sps = measure(bn, seconds, batch);
    fmt::print(
        "{{\"framework\": \"bnorm\", \"bn\": {}, \"threads\": {}, \"batch\": {}, "
        "\"steps_per_second\": {:.1f}}}\n",
        bn, threads, batch, sps);
    std::fflush(stdout);
  }
  return 0;
}
