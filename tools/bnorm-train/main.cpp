// bnorm-train: train the paper's MLP or a small CNN with and without batch norm on Fashion-MNIST
// (or any IDX image set), compare runs over seeds, and run the caffenet BN study. Arguments, output
// and files only: the math is in bnorm::nn.
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <Eigen/Core>

#include "bnorm/comm.hpp"
#include "bnorm/error.hpp"
#if defined(BNORM_WITH_MPI)
#include "bnorm/mpi.hpp"
#endif
#include "bnorm/io.hpp"
#include "flag_names.hpp"
#include "flags.hpp"
#include "inputs.hpp"
#include "options.hpp"
#include "plots.hpp"
#include "progress.hpp"
#include "run.hpp"
#include "seeds.hpp"
#include "study.hpp"

namespace bt = bnorm::train;
namespace nn = bnorm::nn;
namespace fs = std::filesystem;

namespace {

constexpr int kBadInput = 2;

// OpenMP threads run the engine's per-example loops (Conv2d, MaxPool2d, Dropout) and the BN
// kernels, whose results do not depend on the thread count. Eigen's own GEMM threading does:
// it re-derives its k-blocking from the thread count (Eigen 3.4 initParallel), which changes the
// summation order (measured: a 2-thread run's checkpoint differed from a 1-thread run's), so
// Eigen always runs single-threaded here.
void set_threads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
  Eigen::setNbThreads(1);
}

std::string format_lr(double lr) {
  return fmt::format("{}", lr);
}

std::string table(const std::vector<bt::RunResult>& results) {
  std::string t = fmt::format("{:<40} {:>7} {:>6} {:>7} {:>9} {:>9} {:>9} {:>10} {:>22} {:>8}\n",
                              "run", "bn", "lr", "steps", "test acc", "best acc", "test loss",
                              "train loss", "p85-p15 start -> end", "steps/s");
  for (const auto& r : results) {
    const auto& c = r.options.config;
    t += fmt::format(
        "{:<40} {:>7} {:>6} {:>7} {:>9.4f} {:>9.4f} {:>9.4f} {:>10.4f} {:>10.3g} -> {:>8.3g} "
        "{:>8.0f}\n",
        r.options.name, nn::bn_placement_name(c.model.bn), format_lr(c.sgd.learning_rate),
        r.last().step, r.last().test_accuracy, r.best_accuracy(), r.last().test_loss,
        r.last().train_loss, r.spread_start(), r.spread_end(), r.steps_per_second);
  }
  return t;
}

// One row per configuration: mean ± sample std (and min..max) over its seeds.
std::string seeds_table(const std::vector<bt::SeedGroup>& groups) {
  std::string t = fmt::format("\n{:<32} {:>5} {:>18} {:>15} {:>18} {:>18}\n", "configuration",
                              "seeds", "test acc", "min..max", "test loss", "best acc");
  for (const auto& g : groups) {
    const bt::Spread acc = g.final_accuracy();
    t += fmt::format("{:<32} {:>5} {:>18} {:>15} {:>18} {:>18}\n", g.name, acc.n,
                     bt::format_spread(acc), fmt::format("{:.4f}..{:.4f}", acc.min, acc.max),
                     bt::format_spread(g.final_test_loss()), bt::format_spread(g.best_accuracy()));
  }
  return t;
}

// The process group. Data-parallel training needs only this object: when MpiCommunicator
// (bnorm/mpi.hpp) is built, it is created here under mpiexec and everything else follows.
// Started by mpiexec: OpenMPI sets OMPI_COMM_WORLD_SIZE, MPICH and Hydra PMI_SIZE.
bool launched_by_mpiexec() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr;
}

#if defined(BNORM_WITH_MPI)
// MPI lives for the whole program once started (MPI_Init may be called once per process).
std::unique_ptr<bnorm::MpiSession> mpi_session;
#endif

// One process: LocalCommunicator. Under mpiexec: every rank of MPI_COMM_WORLD, data-parallel
// (each rank a shard of every global batch; gradients all-reduced; BN synchronized with
// --sync-bn).
std::unique_ptr<bnorm::Communicator> make_communicator(int& argc, char**& argv) {
  if (!launched_by_mpiexec()) return std::make_unique<bnorm::LocalCommunicator>();
#if defined(BNORM_WITH_MPI)
  mpi_session = std::make_unique<bnorm::MpiSession>(argc, argv);
  return std::make_unique<bnorm::MpiCommunicator>(MPI_COMM_WORLD);
#else
  (void)argc;
  (void)argv;
  throw bnorm::Error(
      "bnorm-train was started by mpiexec but built without MPI; expected a build with "
      "-DBNORM_WITH_MPI=ON (libopenmpi-dev installed), or a run without mpiexec");
#endif
}

int g_argc = 0;
char** g_argv = nullptr;

bt::ProgressMode progress_mode(const std::string& name) {
  return name == "bar"     ? bt::ProgressMode::kBar
         : name == "lines" ? bt::ProgressMode::kLines
         : name == "none"  ? bt::ProgressMode::kNone
                           : bt::ProgressMode::kAuto;
}

int run(const bt::Flags& f, bt::Command command) {
  set_threads(f.threads);
  auto comm = make_communicator(g_argc, g_argv);
  const bool writer = comm->rank() == 0;
  const bool compare = command == bt::Command::kCompare;
  const fs::path out = f.out.empty() ? fs::path(command == bt::Command::kStudy ? "runs/caffenet"
                                                : compare                      ? "runs/compare"
                                                                               : "runs/train")
                                     : fs::path(f.out);
  const std::vector<std::uint64_t> seeds = f.seed_list();
  const bool several = seeds.size() > 1;
  // Validate before any work: the flags first (make_run checks every run), then the data.
  std::vector<bt::RunOptions> runs;
  std::vector<bt::SeedGroup> groups;
  if (command != bt::Command::kStudy) {
    for (double lr : f.lr) {
      for (const auto& bn : f.bn) {
        for (const auto& inputs : f.inputs) {
          const std::string name =
              fmt::format("bn-{}_lr-{}{}", bn, format_lr(lr), bt::inputs_suffix(inputs));
          groups.push_back({name, {}});
          for (std::uint64_t seed : seeds) {
            fs::path dir = compare ? out / name : out;
            if (several) dir /= fmt::format("seed-{}", seed);
            runs.push_back(bt::make_run(f, bn, lr, inputs, seed, dir,
                                        several ? fmt::format("{}_seed-{}", name, seed) : name));
          }
        }
      }
    }
  } else {
    (void)bt::study_runs(f, out);  // validates the study's flags
  }
  const fs::path data_dir(f.data);
  const nn::Dataset train = nn::load_idx_dataset(data_dir, "train");
  const nn::Dataset test = nn::load_idx_dataset(data_dir, "t10k");
  bt::attach_input_scalers(runs, train);
  if (writer) {
    fmt::print("bnorm-train: {} training and {} test images from {} ({} threads)\n", train.size(),
               test.size(), data_dir.string(), omp_get_max_threads());
  }
  bt::Progress progress(writer ? progress_mode(f.progress) : bt::ProgressMode::kNone);
  if (command == bt::Command::kStudy) {
    return bt::run_study(f, out, train, test, *comm, progress);
  }
  std::vector<bt::RunResult> results;
  for (auto& o : runs) {
    bt::fit_to_data(o, train);
    results.push_back(bt::run_training(o, train, test, *comm, progress));
  }
  if (!writer) return 0;

  for (std::size_t i = 0; i < results.size(); ++i) {
    groups[i / seeds.size()].runs.push_back(results[i]);
  }
  std::string summary = table(results);
  if (several) summary += seeds_table(groups);
  bnorm::write_file_atomically(out / "summary.txt", summary);
  std::vector<std::string> plots;
  if (f.plots) {
    std::vector<bt::PlotSeries> series;
    for (const auto& g : groups) {
      // Several seeds: the mean curve of each configuration (mean.csv beside its seeds).
      const fs::path group_dir = compare ? out / g.name : out;
      if (several && bt::write_mean_csv(group_dir / "mean.csv", g)) {
        series.push_back({g.name + fmt::format(" (mean of {} seeds)", g.runs.size()),
                          fs::relative(group_dir / "mean.csv", out)});
      }
      for (const auto& r : g.runs) {
        const fs::path dir = r.options.out;
        if (!several) series.push_back({r.options.name, fs::relative(r.csv, out)});
        if (bt::plot_percentiles(dir, "percentiles", {r.options.name, "metrics.csv"})) {
          plots.push_back((dir / "percentiles.png").string());
        }
      }
    }
    if (bt::plot_accuracy(out, "accuracy", series))
      plots.insert(plots.begin(), (out / "accuracy.png").string());
  }
  fmt::print("\n{}", summary);
  fmt::print("\nresults in {}/ (metrics.csv, run.json per run; summary.txt)\n", out.string());
  for (const auto& p : plots) fmt::print("plot: {}\n", p);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  g_argc = argc;
  g_argv = argv;
  CLI::App app{
      "bnorm-train: batch normalization on the paper's MNIST experiment and small CNNs "
      "(Fashion-MNIST)"};
  app.require_subcommand(1);
  bt::Flags train_flags, compare_flags, study_flags;
  auto* train = app.add_subcommand("train", "train one network");
  bt::add_flags(*train, train_flags, bt::Command::kTrain);
  auto* compare = app.add_subcommand(
      "compare",
      "train several configurations on the same data order and seed, plot them together");
  bt::add_flags(*compare, compare_flags, bt::Command::kCompare);
  auto* study = app.add_subcommand("study", "reproduce a published study on Fashion-MNIST");
  study->require_subcommand(1);
  auto* caffenet = study->add_subcommand(
      "caffenet",
      "caffenet-benchmark's batchnorm.md: BN placement, activations with BN, BN with dropout "
      "(small CNN, mean and spread over seeds)");
  bt::study_defaults(study_flags);
  bt::add_flags(*caffenet, study_flags, bt::Command::kStudy);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kBadInput;
  }
  try {
    if (train->parsed()) return run(train_flags, bt::Command::kTrain);
    if (compare->parsed()) return run(compare_flags, bt::Command::kCompare);
    return run(study_flags, bt::Command::kStudy);
  } catch (const bnorm::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "\nbnorm-train: error: {}\n", bt::in_flag_terms(e.what()));
    return kBadInput;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "\nbnorm-train: error: {}\n", e.what());
    return 1;
  }
}
