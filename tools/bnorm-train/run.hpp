// One training run: steps, periodic evaluation, the CSV log, checkpoints and run.json.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "bnorm/comm.hpp"
#include "bnorm/nn/idx.hpp"
#include "options.hpp"
#include "progress.hpp"

namespace bnorm::train {

// One row of the CSV log.
struct LogRow {
  std::int64_t step = 0;
  double train_loss = 0;  // mean batch loss since the previous row (NaN at step 0)
  double test_accuracy = 0;
  double p15 = 0, p50 = 0, p85 = 0;
  double test_loss = 0;  // mean log loss (softmax cross-entropy) on the evaluated test images
};

struct RunResult {
  RunOptions options;
  std::vector<LogRow> log;
  double steps_per_second = 0;  // of this invocation's steps (evaluation excluded)
  double seconds = 0;           // wall time of this invocation
  std::filesystem::path csv;

  [[nodiscard]] const LogRow& last() const { return log.back(); }
  [[nodiscard]] double best_accuracy() const;
  // p85 - p15 of the tracked sigmoid input at the first and the last evaluation.
  [[nodiscard]] double spread_start() const { return log.front().p85 - log.front().p15; }
  [[nodiscard]] double spread_end() const { return last().p85 - last().p15; }
};

inline constexpr const char* kCsvHeader = "step,train_loss,test_accuracy,p15,p50,p85,test_loss\n";
inline constexpr const char* kCheckpointName = "checkpoint.safetensors";

// Trains per `options` and writes into options.out: metrics.csv (rewritten atomically at every
// evaluation), checkpoint.safetensors (with --checkpoint-every), run.json at the end. Only rank 0
// of `comm` evaluates, prints and writes files. Throws bnorm::Error for any bad input, before
// any output file is changed where it can be checked first.
RunResult run_training(const RunOptions& options, const nn::Dataset& train, const nn::Dataset& test,
                       const Communicator& comm, Progress& progress);

// The CSV text of a log.
[[nodiscard]] std::string format_csv(const std::vector<LogRow>& log);
// Parses what format_csv wrote. Throws bnorm::Error naming `source` and the line otherwise.
[[nodiscard]] std::vector<LogRow> parse_csv(const std::string& text, const std::string& source);

}  // namespace bnorm::train
