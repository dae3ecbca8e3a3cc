// run_training: the loop around nn::Trainer that logs, checkpoints and reports.
#include "run.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include <fmt/format.h>
#include <Eigen/Core>

#include "bnorm/error.hpp"
#include "bnorm/io.hpp"

namespace bnorm::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Hexadecimal floating point: exact round trip of a double through checkpoint metadata.
std::string exact(double v) {
  return fmt::format("{:a}", v);
}
double parse_exact(const std::string& s) {
  return std::strtod(s.c_str(), nullptr);
}

std::string describe_difference(const nlohmann::json& saved, const nlohmann::json& now) {
  for (const auto& [key, value] : now.items()) {
    if (!saved.contains(key) || saved[key] != value) {
      return fmt::format("--{} is {} now; expected {} (the checkpoint's)", key, value.dump(),
                         saved.contains(key) ? saved[key].dump() : "(absent)");
    }
  }
  return "the checkpoint's configuration differs";
}

nlohmann::json versions() {
  return {{"bnorm", BNORM_VERSION},
          {"eigen",
           fmt::format("{}.{}.{}", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION)},
          {"compiler", fmt::format("g++ {}", __VERSION__)},
          {"checkpoint_format", nn::kCheckpointFormat}};
}

}  // namespace

double RunResult::best_accuracy() const {
  double best = 0;
  for (const auto& r : log) best = std::max(best, r.test_accuracy);
  return best;
}

std::string format_csv(const std::vector<LogRow>& log) {
  std::string text = kCsvHeader;
  for (const auto& r : log) {
    text += fmt::format("{},{:.6f},{:.6f},{:.6g},{:.6g},{:.6g},{:.6f}\n", r.step, r.train_loss,
                        r.test_accuracy, r.p15, r.p50, r.p85, r.test_loss);
  }
  return text;
}

std::vector<LogRow> parse_csv(const std::string& text, const std::string& source) {
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);
  if (line + "\n" != kCsvHeader) {
    throw Error(fmt::format(
        "{}: line 1: expected the header '{}', got '{}'", source,
        std::string_view(kCsvHeader).substr(0, std::string_view(kCsvHeader).size() - 1), line));
  }
  std::vector<LogRow> log;
  for (int n = 2; std::getline(in, line); ++n) {
    LogRow r;
    std::array<double, 6> v{};
    char* p = line.data();
    char* end = nullptr;
    r.step = std::strtoll(p, &end, 10);
    bool ok = end != p && *end == ',';
    for (std::size_t k = 0; ok && k < v.size(); ++k) {
      p = end + 1;
      v[k] = std::strtod(p, &end);
      ok = end != p && (*end == ',' || (k + 1 == v.size() && *end == '\0'));
    }
    if (!ok) throw Error(fmt::format("{}: line {}: expected 7 numbers, got '{}'", source, n, line));
    r.train_loss = v[0];
    r.test_accuracy = v[1];
    r.p15 = v[2];
    r.p50 = v[3];
    r.p85 = v[4];
    r.test_loss = v[5];
    log.push_back(r);
  }
  return log;
}

RunResult run_training(const RunOptions& o, const nn::Dataset& train, const nn::Dataset& test,
                       const Communicator& comm, Progress& progress) {
  if (o.steps <= 0) throw Error(fmt::format("--steps {}; expected > 0", o.steps));
  if (o.eval_every <= 0) throw Error(fmt::format("--eval-every {}; expected > 0", o.eval_every));
  if (o.checkpoint_every < 0) {
    throw Error(fmt::format("--checkpoint-every {}; expected >= 0 (0: off)", o.checkpoint_every));
  }
  const auto start = Clock::now();
  const bool writer = comm.rank() == 0;
  nn::Trainer trainer(o.config, train, comm);
  if (o.track_unit < 0 || o.track_unit >= trainer.tracked_width()) {
    throw Error(
        fmt::format("--track-unit {}; expected [0, {}) (the values per example of the "
                    "last hidden activation's input)",
                    o.track_unit, trainer.tracked_width()));
  }
  const fs::path checkpoint = o.out / kCheckpointName;
  RunResult result;
  result.options = o;
  result.csv = o.out / "metrics.csv";
  const std::string fp = fingerprint(o).dump();

  // Rows at multiples of eval_every (these go into checkpoints) plus, when the last step is
  // not one, a final row that only the CSV file shows.
  std::vector<LogRow>& log = result.log;
  double loss_sum = 0;
  std::int64_t loss_count = 0;
  if (o.resume) {
    if (!fs::exists(checkpoint)) {
      throw Error(
          fmt::format("--resume: {}: no such file; expected a checkpoint written by a "
                      "run with --checkpoint-every and the same --out",
                      checkpoint.string()));
    }
    auto meta = trainer.load_checkpoint(checkpoint);
    if (meta["fingerprint"] != fp) {
      throw Error(fmt::format(
          "--resume: {}: {}", checkpoint.string(),
          describe_difference(nlohmann::json::parse(meta["fingerprint"]), fingerprint(o))));
    }
    if (trainer.steps_done() > o.steps) {
      throw Error(fmt::format("--resume: {} is at step {}; expected --steps >= {} (got {})",
                              checkpoint.string(), trainer.steps_done(), trainer.steps_done(),
                              o.steps));
    }
    log = parse_csv(meta["metrics_csv"], checkpoint.string() + " (metrics_csv)");
    loss_sum = parse_exact(meta["loss_sum"]);
    loss_count = std::strtoll(meta["loss_count"].c_str(), nullptr, 10);
  }
  if (writer) fs::create_directories(o.out);

  auto evaluate = [&](double train_loss) {
    const nn::Evaluation e = trainer.evaluate(test, o.eval_limit, o.track_unit);
    return LogRow{trainer.steps_done(), train_loss, e.accuracy, e.p15, e.p50, e.p85, e.loss};
  };
  if (log.empty() && writer) {
    log.push_back(evaluate(std::nan("")));
    write_file_atomically(result.csv, format_csv(log));
  }

  progress.start(o.name, trainer.steps_done(), o.steps);
  if (writer) {
    // The state training starts from (step 0, or the checkpoint's last evaluation).
    progress.evaluated(log.back().step, log.back().train_loss, log.back().test_accuracy, 0.0);
  }
  double step_seconds = 0;
  const std::int64_t first = trainer.steps_done();
  auto rate = [&] {
    const auto done = trainer.steps_done() - first;
    return step_seconds > 0 ? static_cast<double>(done) / step_seconds : 0.0;
  };
  std::vector<LogRow> shown = log;
  while (trainer.steps_done() < o.steps) {
    const auto t0 = Clock::now();
    const double loss = trainer.step();
    step_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    loss_sum += loss;
    ++loss_count;
    const std::int64_t step = trainer.steps_done();
    if (writer) progress.step(step, loss, rate());
    const bool cadence = step % o.eval_every == 0;
    if (writer && (cadence || step == o.steps)) {
      const LogRow row =
          evaluate(loss_count > 0 ? loss_sum / static_cast<double>(loss_count) : std::nan(""));
      shown = log;
      if (cadence) {
        log.push_back(row);
        loss_sum = 0;
        loss_count = 0;
        shown = log;
      } else {
        shown.push_back(row);
      }
      write_file_atomically(result.csv, format_csv(shown));
      progress.evaluated(step, row.train_loss, row.test_accuracy, rate());
    }
    if (writer && o.checkpoint_every > 0 && (step % o.checkpoint_every == 0 || step == o.steps)) {
      trainer.save_checkpoint(checkpoint, {{"fingerprint", fp},
                                           {"metrics_csv", format_csv(log)},
                                           {"loss_sum", exact(loss_sum)},
                                           {"loss_count", std::to_string(loss_count)}});
    }
  }
  progress.finish();
  log = shown;
  result.steps_per_second = rate();
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (writer) {
    const nlohmann::json run = {
        {"config", to_json(o)},
        {"versions", versions()},
        {"results",
         {{"steps", result.last().step},
          {"final_test_accuracy", result.last().test_accuracy},
          {"best_test_accuracy", result.best_accuracy()},
          {"final_train_loss", result.last().train_loss},
          {"final_test_loss", result.last().test_loss},
          {"evaluated_examples",
           o.eval_limit > 0 ? std::min(o.eval_limit, test.size()) : test.size()},
          {"tracked_input_spread_start", result.spread_start()},
          {"tracked_input_spread_end", result.spread_end()},
          {"steps_per_second", result.steps_per_second},
          {"wall_seconds", result.seconds}}},
        {"files",
         {{"csv", "metrics.csv"}, {"checkpoint", o.checkpoint_every > 0 ? kCheckpointName : ""}}},
    };
    write_file_atomically(o.out / "run.json", run.dump(2) + "\n");
  }
  return result;
}

}  // namespace bnorm::train
