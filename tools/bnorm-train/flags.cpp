// The flags and their translation into RunOptions.
#include "flags.hpp"

#include <cstdlib>

#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/nn/arch.hpp"

namespace bnorm::train {

void add_flags(CLI::App& app, Flags& f, Command command) {
  const bool compare = command == Command::kCompare;
  const bool study = command == Command::kStudy;
  if (!study) {
    app.add_option("--hidden", f.hidden, "hidden layer widths (the MLP; ignored with --arch)")
        ->delimiter(',')
        ->capture_default_str();
    app.add_option("--activation", f.activation, "hidden activation")
        ->check(CLI::IsMember({"sigmoid", "relu", "tanh", "elu"}))
        ->capture_default_str();
  }
  app.add_option("--arch", f.arch,
                 "a convolutional network's hidden layers, e.g. c16,c16,p,c32,p,f128 "
                 "(c<ch>[k<kernel>][s<stride>] conv, p[<size>][s<stride>] max pool, f<units> "
                 "dense); empty: the MLP of --hidden")
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
  } else if (!study) {
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
  } else {
    app.add_option("--lr", f.lr[0], "base learning rate")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--tables", f.tables, "which tables (comma-separated)")
        ->delimiter(',')
        ->check(CLI::IsMember({"placement", "activation", "dropout"}))
        ->capture_default_str();
  }
  if (!study) {
    app.add_option("--bn-scale-bias", f.bn_scale_bias,
                   "BN learns gamma and beta (false: caffe's BatchNorm without a Scale layer)")
        ->capture_default_str();
    app.add_option("--dropout", f.dropout, "dropout rate after each hidden dense block")
        ->check(CLI::Range(0.0, 0.999999))
        ->capture_default_str();
  }
  app.add_option("--lr-drop", f.lr_drop,
                 "learning-rate drops STEP:FACTOR,... (from step STEP on, lr *= FACTOR)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--steps", f.steps, "training steps")
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
  app.add_option("--init", f.init,
                 "weight initialization (auto: gaussian for the MLP, glorot with --arch)")
      ->check(CLI::IsMember({"auto", "gaussian", "glorot"}))
      ->capture_default_str();
  app.add_option("--init-std", f.init_std, "std of the Gaussian initial weights")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  if (!study) {
    app.add_option("--seed", f.seed, "seed of initialization, data order and dropout")
        ->capture_default_str();
  }
  app.add_option("--seeds", f.seeds,
                 "run each configuration once per seed (comma-separated); mean and spread")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--eval-every", f.eval_every, "steps between test evaluations")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--eval-limit", f.eval_limit, "evaluate on the first N test images (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  if (!study) {
    app.add_option("--track-unit", f.track_unit,
                   "unit of the last hidden activation's input whose percentiles are logged")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
  }
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
  if (!study) {
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
  }
  app.add_option("--progress", f.progress, "progress display")
      ->check(CLI::IsMember({"auto", "bar", "lines", "none"}))
      ->capture_default_str();
  app.add_flag("!--no-plots", f.plots, "skip the gnuplot PNGs");
}

std::vector<nn::LrDrop> parse_lr_drops(const std::vector<std::string>& items) {
  std::vector<nn::LrDrop> drops;
  for (const auto& item : items) {
    const auto colon = item.find(':');
    char* end = nullptr;
    nn::LrDrop d;
    bool ok = colon != std::string::npos && colon > 0;
    if (ok) {
      const std::string step = item.substr(0, colon);
      d.step = std::strtoll(step.c_str(), &end, 10);
      ok = *end == '\0';
    }
    if (ok) {
      const std::string factor = item.substr(colon + 1);
      d.factor = std::strtod(factor.c_str(), &end);
      ok = !factor.empty() && *end == '\0';
    }
    if (!ok) {
      throw Error(fmt::format("--lr-drop '{}'; expected STEP:FACTOR, e.g. 1500:0.1", item));
    }
    drops.push_back(d);
  }
  return drops;
}

RunOptions make_run(const Flags& f, const std::string& bn, double lr, const std::string& inputs,
                    std::uint64_t seed, const std::filesystem::path& out, const std::string& name) {
  RunOptions o;
  o.name = name;
  o.inputs = inputs;
  auto& c = o.config;
  c.model.hidden = f.hidden;
  if (!f.arch.empty()) c.model.arch = nn::parse_arch(f.arch);
  c.model.activation = nn::parse_activation(f.activation);
  c.model.bn = nn::parse_bn_placement(bn);
  c.model.dropout = f.dropout;
  c.model.bn_options.momentum = f.bn_momentum;
  c.model.bn_options.epsilon = f.bn_epsilon;
  c.model.bn_options.center = f.bn_scale_bias;
  c.model.bn_options.scale = f.bn_scale_bias;
  c.model.bn_options.renorm = f.renorm;
  c.model.bn_options.renorm_rmax = f.renorm_rmax;
  c.model.bn_options.renorm_dmax = f.renorm_dmax;
  c.model.bn_options.virtual_batch = f.virtual_batch;
  const bool glorot = f.init == "glorot" || (f.init == "auto" && !f.arch.empty());
  c.model.init.kind = glorot ? nn::Init::Kind::kGlorotUniform : nn::Init::Kind::kGaussian;
  c.model.init.std = f.init_std;
  c.sgd.learning_rate = lr;
  c.sgd.momentum = f.momentum;
  c.sgd.weight_decay = f.weight_decay;
  c.sgd.lr_drops = parse_lr_drops(f.lr_drop);
  c.batch = f.batch;
  c.seed = seed;
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

void fit_to_data(RunOptions& run, const nn::Dataset& train) {
  auto& m = run.config.model;
  m.inputs = train.features();
  m.image = {train.images.rows, train.images.cols, 1};
}

}  // namespace bnorm::train
