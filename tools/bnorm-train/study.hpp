// `bnorm-train study caffenet`: caffenet-benchmark's batchnorm.md tables on Fashion-MNIST.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "bnorm/comm.hpp"
#include "bnorm/nn/idx.hpp"
#include "flags.hpp"
#include "progress.hpp"

namespace bnorm::train {

// caffenet's solver shape on a small CNN: arch c16,c16,p,c32,p,f128, SGD lr 0.01 with momentum
// 0.9 and weight decay 5e-4, one lr drop x0.1 at 3/4 of the steps (when --lr-drop is not
// given), batch 60, 2,000 steps (2 epochs), Glorot init, BN momentum 0.9 (PyTorch's 0.1),
// seeds 1,2,3, all three tables.
void study_defaults(Flags& f);

// One configuration of the study (each run once per seed).
struct StudyConfig {
  std::string name;  // directory and label, e.g. "relu_bn-before-sb"
  std::string activation, bn;
  bool scale_bias = false;
  double dropout = 0;
};

// The configurations the chosen tables need (shared rows once). Throws bnorm::Error for
// invalid flags (every run is built and validated).
std::vector<StudyConfig> study_runs(const Flags& f, const std::filesystem::path& out);

// Runs every configuration on every seed, then writes <out>/summary.md (the tables, with the
// published caffenet figures beside them and a verdict per published ordering), mean.csv per
// configuration and accuracy-<table>.png. Returns the exit code.
int run_study(const Flags& f, const std::filesystem::path& out, const nn::Dataset& train,
              const nn::Dataset& test, const Communicator& comm, Progress& progress);

}  // namespace bnorm::train
