// The command-line flags of `train`, `compare` and `study`, and the runs they describe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "bnorm/nn/idx.hpp"
#include "options.hpp"

namespace bnorm::train {

enum class Command { kTrain, kCompare, kStudy };

struct Flags {
  std::vector<std::int64_t> hidden{100, 100, 100};
  std::string arch;  // empty: the MLP of --hidden
  std::string activation = "sigmoid";
  std::vector<std::string> bn;
  bool bn_scale_bias = true;
  std::vector<double> lr;
  std::vector<std::string> inputs{"raw"};  // raw or standardize (inputs.hpp); study: raw
  std::vector<std::string> lr_drop;        // STEP:FACTOR items
  double dropout = 0;
  std::int64_t steps = 50000;
  std::int64_t batch = 60;
  double momentum = 0;
  double weight_decay = 0;
  std::string init = "auto";
  double init_std = 0.01;
  std::uint64_t seed = 1;
  std::vector<std::uint64_t> seeds;  // several: each configuration once per seed
  std::int64_t eval_every = 100;
  std::int64_t eval_limit = 0;
  std::int64_t track_unit = 0;
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string out;
  // One thread by default: a step of the paper's network (batch 60) is a few small GEMMs that
  // do not pay for a thread team (measured: 2 threads were slower on 2 cores, as for PyTorch).
  int threads = 1;
  double bn_momentum = 0.99;
  double bn_epsilon = 1e-3;
  bool renorm = false;
  double renorm_rmax = 3;
  double renorm_dmax = 5;
  std::int64_t virtual_batch = 0;
  std::int64_t checkpoint_every = 0;
  bool resume = false;
  bool sync_bn = false;
  std::string progress = "auto";
  bool plots = true;
  std::vector<std::string> tables;  // study: which tables

  // The seeds to run: --seeds when given, else --seed.
  [[nodiscard]] std::vector<std::uint64_t> seed_list() const {
    return seeds.empty() ? std::vector<std::uint64_t>{seed} : seeds;
  }
};

// Registers the flags of `command` on `app` with the defaults in `f` (study: caffenet's solver).
void add_flags(CLI::App& app, Flags& f, Command command);

// "STEP:FACTOR" items -> drops. Throws bnorm::Error naming the item otherwise.
[[nodiscard]] std::vector<nn::LrDrop> parse_lr_drops(const std::vector<std::string>& items);

// One run of the flags' network with these choices, validated (bnorm::Error otherwise).
[[nodiscard]] RunOptions make_run(const Flags& f, const std::string& bn, double lr,
                                  const std::string& inputs, std::uint64_t seed,
                                  const std::filesystem::path& out, const std::string& name);

// Sets the model's input from the data (image size; the CNN reads it as height x width x 1).
void fit_to_data(RunOptions& run, const nn::Dataset& train);

}  // namespace bnorm::train
