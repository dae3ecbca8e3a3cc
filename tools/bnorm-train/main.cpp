// bnorm-train: train the paper's MLP with and without batch norm on Fashion-MNIST (or any IDX
// image set), and compare runs. Arguments, output and files only: the math is in bnorm::nn.
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
#include "inputs.hpp"
#include "options.hpp"
#include "plots.hpp"
#include "progress.hpp"
#include "run.hpp"

namespace bt = bnorm::train;
namespace nn = bnorm::nn;
namespace fs = std::filesystem;

namespace {

constexpr int kBadInput = 2;

// Flags shared by `train` and `compare`, in their command-line form.
struct Flags {
  std::vector<std::int64_t> hidden{100, 100, 100};
  std::string activation = "sigmoid";
  std::vector<std::string> bn;
  std::vector<double> lr;
  std::vector<std::string> inputs{"raw"};
  std::int64_t steps = 50000;
  std::int64_t batch = 60;
  double momentum = 0;
  double weight_decay = 0;
  std::string init = "gaussian";
  double init_std = 0.01;
  std::uint64_t seed = 1;
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
};

void add_flags(CLI::App& app, Flags& f, bool compare) {
  app.add_option("--hidden", f.hidden, "hidden layer widths")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--activation", f.activation, "hidden activation")
      ->check(CLI::IsMember({"sigmoid", "relu", "tanh"}))
      ->capture_default_str();
  if (compare) {
    f.bn = {"none", "before"};
    f.lr = {0.5};
    app.add_option("--bn", f.bn, "BN placements to compare (comma-separated)")
        ->delimiter(',')
        ->check(CLI::IsMember({"none", "before", "after"}))
        ->capture_default_str();
    app.add_option("--lr", f.lr, "learning rates to compare (comma-separated)")
        ->delimiter(',')
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--inputs", f.inputs,
                   "inputs to compare: raw pixels, or standardized per pixel on the training set")
        ->delimiter(',')
        ->check(CLI::IsMember({"raw", "standardize"}))
        ->capture_default_str();
  } else {
    f.bn = {"before"};
    f.lr = {0.5};
    app.add_option("--bn", f.bn[0], "batch norm before or after the activation, or none")
        ->check(CLI::IsMember({"none", "before", "after"}))
        ->capture_default_str();
    app.add_option("--lr", f.lr[0], "learning rate")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--inputs", f.inputs[0], "raw pixels, or standardized per pixel")
        ->check(CLI::IsMember({"raw", "standardize"}))
        ->capture_default_str();
  }
  app.add_option("--steps", f.steps, "training steps (the paper: 50000)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--batch", f.batch, "global batch size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--momentum", f.momentum, "SGD momentum")
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();
  app.add_option("--weight-decay", f.weight_decay, "L2 weight decay")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--init", f.init, "weight initialization")
      ->check(CLI::IsMember({"gaussian", "glorot"}))
      ->capture_default_str();
  app.add_option("--init-std", f.init_std, "std of the Gaussian initial weights")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--seed", f.seed, "seed of initialization and data order")->capture_default_str();
  app.add_option("--eval-every", f.eval_every, "steps between test evaluations")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--eval-limit", f.eval_limit, "evaluate on the first N test images (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--track-unit", f.track_unit,
                 "last-hidden-layer unit whose input percentiles are logged")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--data", f.data,
                 "directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
      ->capture_default_str();
  app.add_option("--out", f.out, "output directory")->capture_default_str();
  app.add_option("--threads", f.threads, "OpenMP and Eigen threads (0: all cores)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--bn-momentum", f.bn_momentum, "moving-average momentum (Keras convention)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--bn-epsilon", f.bn_epsilon, "BN epsilon")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--renorm", f.renorm, "batch renormalization");
  app.add_option("--renorm-rmax", f.renorm_rmax, "renorm r clip")
      ->check(CLI::Range(1.0, 1e30))
      ->capture_default_str();
  app.add_option("--renorm-dmax", f.renorm_dmax, "renorm d clip")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--virtual-batch", f.virtual_batch, "ghost batch size (0: off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--checkpoint-every", f.checkpoint_every, "steps between checkpoints (0: off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--resume", f.resume, "continue from <out>/checkpoint.safetensors");
  app.add_flag("--sync-bn", f.sync_bn, "synchronized BN statistics across processes (mpiexec)");
  app.add_option("--progress", f.progress, "progress display")
      ->check(CLI::IsMember({"auto", "bar", "lines", "none"}))
      ->capture_default_str();
  app.add_flag("!--no-plots", f.plots, "skip the gnuplot PNGs");
}

std::string format_lr(double lr) {
  return fmt::format("{}", lr);
}

bt::RunOptions make_run(const Flags& f, const std::string& bn, double lr, const std::string& inputs,
                        const fs::path& out, const std::string& name) {
  bt::RunOptions o;
  o.name = name;
  o.inputs = inputs;
  auto& c = o.config;
  c.model.hidden = f.hidden;
  c.model.activation = nn::parse_activation(f.activation);
  c.model.bn = nn::parse_bn_placement(bn);
  c.model.bn_options.momentum = f.bn_momentum;
  c.model.bn_options.epsilon = f.bn_epsilon;
  c.model.bn_options.renorm = f.renorm;
  c.model.bn_options.renorm_rmax = f.renorm_rmax;
  c.model.bn_options.renorm_dmax = f.renorm_dmax;
  c.model.bn_options.virtual_batch = f.virtual_batch;
  c.model.init.kind =
      f.init == "glorot" ? nn::Init::Kind::kGlorotUniform : nn::Init::Kind::kGaussian;
  c.model.init.std = f.init_std;
  c.sgd.learning_rate = lr;
  c.sgd.momentum = f.momentum;
  c.sgd.weight_decay = f.weight_decay;
  c.batch = f.batch;
  c.seed = f.seed;
  c.sync_bn = f.sync_bn;
  o.steps = f.steps;
  o.eval_every = f.eval_every;
  o.eval_limit = f.eval_limit;
  o.track_unit = f.track_unit;
  o.checkpoint_every = f.checkpoint_every;
  o.resume = f.resume;
  o.out = out;
  nn::validate(c.model.bn_options);
  nn::validate(c.sgd);
  return o;
}

void set_threads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
  Eigen::setNbThreads(threads > 0 ? threads : omp_get_max_threads());
}

std::string table(const std::vector<bt::RunResult>& results) {
  std::string t =
      fmt::format("{:<30} {:>7} {:>6} {:>7} {:>9} {:>9} {:>10} {:>22} {:>8}\n", "run", "bn", "lr",
                  "steps", "test acc", "best acc", "train loss", "p85-p15 start -> end", "steps/s");
  for (const auto& r : results) {
    const auto& c = r.options.config;
    t += fmt::format(
        "{:<30} {:>7} {:>6} {:>7} {:>9.4f} {:>9.4f} {:>10.4f} {:>10.3g} -> {:>8.3g} {:>8.0f}\n",
        r.options.name, nn::bn_placement_name(c.model.bn), format_lr(c.sgd.learning_rate),
        r.last().step, r.last().test_accuracy, r.best_accuracy(), r.last().train_loss,
        r.spread_start(), r.spread_end(), r.steps_per_second);
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

int run(const Flags& f, bool compare) {
  set_threads(f.threads);
  auto comm = make_communicator(g_argc, g_argv);
  const bool writer = comm->rank() == 0;
  const fs::path out =
      f.out.empty() ? fs::path(compare ? "runs/compare" : "runs/train") : fs::path(f.out);
  std::vector<bt::RunOptions> runs;
  for (double lr : f.lr) {
    for (const auto& bn : f.bn) {
      for (const auto& inputs : f.inputs) {
        const std::string name =
            fmt::format("bn-{}_lr-{}{}", bn, format_lr(lr), bt::inputs_suffix(inputs));
        runs.push_back(make_run(f, bn, lr, inputs, compare ? out / name : out, name));
      }
    }
  }
  // Validate before any work: every run's flags were checked by make_run; now the data.
  const fs::path data_dir(f.data);
  const nn::Dataset train = nn::load_idx_dataset(data_dir, "train");
  const nn::Dataset test = nn::load_idx_dataset(data_dir, "t10k");
  bt::attach_input_scalers(runs, train);
  if (writer) {
    fmt::print("bnorm-train: {} training and {} test images from {} ({} threads)\n", train.size(),
               test.size(), data_dir.string(), Eigen::nbThreads());
  }
  bt::Progress progress(writer ? (f.progress == "bar"     ? bt::ProgressMode::kBar
                                  : f.progress == "lines" ? bt::ProgressMode::kLines
                                  : f.progress == "none"  ? bt::ProgressMode::kNone
                                                          : bt::ProgressMode::kAuto)
                               : bt::ProgressMode::kNone);
  std::vector<bt::RunResult> results;
  for (const auto& o : runs) results.push_back(bt::run_training(o, train, test, *comm, progress));
  if (!writer) return 0;

  const std::string summary = table(results);
  bnorm::write_file_atomically(out / "summary.txt", summary);
  std::vector<std::string> plots;
  if (f.plots) {
    std::vector<bt::PlotSeries> series;
    for (const auto& r : results) {
      const fs::path dir = r.options.out;
      series.push_back({r.options.name, fs::relative(r.csv, out)});
      if (bt::plot_percentiles(dir, "percentiles", {r.options.name, "metrics.csv"})) {
        plots.push_back((dir / "percentiles.png").string());
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
  CLI::App app{"bnorm-train: batch normalization on the paper's MNIST experiment (Fashion-MNIST)"};
  app.require_subcommand(1);
  Flags train_flags, compare_flags;
  auto* train = app.add_subcommand("train", "train one network");
  add_flags(*train, train_flags, false);
  auto* compare = app.add_subcommand(
      "compare",
      "train several configurations on the same data order and seed, plot them together");
  add_flags(*compare, compare_flags, true);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kBadInput;
  }
  try {
    return train->parsed() ? run(train_flags, false) : run(compare_flags, true);
  } catch (const bnorm::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "\nbnorm-train: error: {}\n", e.what());
    return kBadInput;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "\nbnorm-train: error: {}\n", e.what());
    return 1;
  }
}
