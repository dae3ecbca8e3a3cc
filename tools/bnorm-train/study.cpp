// The caffenet BN study: configurations, runs over seeds, tables and verdicts.
#include "study.hpp"

#include <cmath>
#include <map>

#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/io.hpp"
#include "plots.hpp"
#include "run.hpp"
#include "seeds.hpp"

namespace bnorm::train {
namespace {

namespace fs = std::filesystem;

// The published figures: ducha-aiki/caffenet-benchmark batchnorm.md, ImageNet, CaffeNet-128
// (as recorded in shared/REFERENCES.md section 8). Only the placement table is recorded there.
struct Published {
  const char* config;
  double top1, log_loss;
};
constexpr Published kCaffenetPlacement[] = {
    {"relu_bn-before", 0.474, 2.35},
    {"relu_bn-before-sb", 0.478, 2.33},
    {"relu_bn-after", 0.499, 2.21},
    {"relu_bn-after-sb", 0.493, 2.24},
};

std::string config_name(const std::string& act, const std::string& bn, bool sb, double dropout) {
  std::string name = fmt::format("{}_bn-{}", act, bn);
  if (sb) name += "-sb";
  if (dropout > 0) name += fmt::format("_dropout-{}", dropout);
  return name;
}

bool wants(const Flags& f, const std::string& table) {
  return std::find(f.tables.begin(), f.tables.end(), table) != f.tables.end();
}

Flags flags_of(const Flags& f, const StudyConfig& c) {
  Flags g = f;
  g.activation = c.activation;
  g.bn_scale_bias = c.scale_bias;
  g.dropout = c.dropout;
  if (g.lr_drop.empty()) g.lr_drop = {fmt::format("{}:0.1", f.steps * 3 / 4)};
  return g;
}

// The difference of two configurations' mean accuracies against its standard error.
std::string verdict(const SeedGroup& a, const SeedGroup& b, double published_difference) {
  const Spread sa = a.final_accuracy(), sb = b.final_accuracy();
  const double diff = sa.mean - sb.mean;
  const double se = std::sqrt(sa.std * sa.std / static_cast<double>(sa.n) +
                              sb.std * sb.std / static_cast<double>(sb.n));
  std::string what;
  if (sa.n < 2 || sb.n < 2) {
    what = "one seed: no spread to judge by";
  } else if (std::abs(diff) <= 2 * se) {
    what = "within the seed spread (difference within 2 standard errors): not reproduced";
  } else if ((diff > 0) == (published_difference > 0)) {
    what = "same sign, beyond 2 standard errors: reproduced";
  } else {
    what = "opposite sign, beyond 2 standard errors: contradicted";
  }
  return fmt::format("| {} − {} | {:+.4f} | {:+.4f} ± {:.4f} | {} |\n", a.name, b.name,
                     published_difference, diff, se, what);
}

}  // namespace

void study_defaults(Flags& f) {
  f.arch = "c16,c16,p,c32,p,f128";
  f.lr = {0.01};
  f.momentum = 0.9;
  f.weight_decay = 5e-4;
  f.steps = 2000;
  f.batch = 60;
  f.init = "glorot";
  f.seeds = {1, 2, 3};
  // PyTorch's default (momentum 0.1 in its convention): caffe's BatchNorm keeps a bias-corrected
  // moving average, which the Keras default 0.99 from zero/one initial statistics is not within
  // a short run (after 250 steps 8% of the initial values remain; measured, BN-after rows then
  // evaluate at 0.3 accuracy while training well).
  f.bn_momentum = 0.9;
  f.eval_every = 250;
  f.tables = {"placement", "activation", "dropout"};
}

std::vector<StudyConfig> study_runs(const Flags& f, const fs::path& out) {
  std::vector<StudyConfig> configs;
  auto add = [&](const std::string& act, const std::string& bn, bool sb, double dropout) {
    const std::string name = config_name(act, bn, sb, dropout);
    for (const auto& c : configs) {
      if (c.name == name) return;
    }
    configs.push_back({name, act, bn, sb, dropout});
  };
  if (wants(f, "placement")) {
    add("relu", "none", false, 0);
    add("relu", "before", false, 0);
    add("relu", "before", true, 0);
    add("relu", "after", false, 0);
    add("relu", "after", true, 0);
  }
  if (wants(f, "activation")) {
    for (const char* act : {"relu", "elu", "sigmoid"}) {
      add(act, "none", false, 0);
      add(act, "after", false, 0);
    }
  }
  if (wants(f, "dropout")) {
    for (double d : {0.0, 0.2, 0.5}) add("relu", "after", false, d);
  }
  if (configs.empty()) throw Error("--tables is empty; expected placement, activation or dropout");
  for (const auto& c : configs) {
    for (std::uint64_t seed : f.seed_list()) {
      (void)make_run(flags_of(f, c), c.bn, f.lr.at(0), f.inputs.at(0), seed, out / c.name, c.name);
    }
  }
  return configs;
}

int run_study(const Flags& f, const fs::path& out, const nn::Dataset& train,
              const nn::Dataset& test, const Communicator& comm, Progress& progress) {
  const std::vector<StudyConfig> configs = study_runs(f, out);
  const std::vector<std::uint64_t> seeds = f.seed_list();
  std::map<std::string, SeedGroup> groups;
  for (const auto& c : configs) {
    SeedGroup& g = groups[c.name];
    g.name = c.name;
    for (std::uint64_t seed : seeds) {
      RunOptions o = make_run(flags_of(f, c), c.bn, f.lr.at(0), f.inputs.at(0), seed,
                              out / c.name / fmt::format("seed-{}", seed),
                              fmt::format("{}_seed-{}", c.name, seed));
      fit_to_data(o, train);
      g.runs.push_back(run_training(o, train, test, comm, progress));
    }
  }
  if (comm.rank() != 0) return 0;
  for (const auto& [name, g] : groups) (void)write_mean_csv(out / name / "mean.csv", g);

  const Flags solver = flags_of(f, configs.front());
  std::string md = fmt::format(
      "# caffenet-benchmark's BN study on Fashion-MNIST\n\n"
      "Network {} (conv 3x3 'same', max pool 2x2) + softmax classifier; SGD lr {} momentum {} "
      "weight decay {}, lr drops {}, batch {}, {} steps, Glorot init, BN momentum {} epsilon {}; "
      "seeds {}. Figures: final test accuracy and test log loss on {} test images, mean ± "
      "sample standard deviation over the seeds. caffenet: ImageNet, CaffeNet-128 "
      "(ducha-aiki/caffenet-benchmark batchnorm.md), beside for reference: another dataset and "
      "network, so compare orderings, not values.\n",
      f.arch, f.lr.at(0), f.momentum, f.weight_decay, fmt::join(solver.lr_drop, ","), f.batch,
      f.steps, f.bn_momentum, f.bn_epsilon, fmt::join(seeds, ","),
      f.eval_limit > 0 ? std::min<std::int64_t>(f.eval_limit, test.size()) : test.size());
  auto acc = [&](const std::string& n) { return format_spread(groups.at(n).final_accuracy()); };
  auto loss = [&](const std::string& n) {
    return format_spread(groups.at(n).final_test_loss(), 3);
  };
  std::vector<std::pair<std::string, std::vector<PlotSeries>>> figures;
  auto series = [&](const std::vector<std::string>& names) {
    std::vector<PlotSeries> s;
    for (const auto& n : names) s.push_back({n, fs::path(n) / "mean.csv"});
    return s;
  };
  if (wants(f, "placement")) {
    md +=
        "\n## BN placement (ReLU)\n\n| configuration | test accuracy | test log loss | caffenet "
        "top-1 | caffenet log loss |\n|---|---:|---:|---:|---:|\n";
    const std::vector<std::string> rows = {"relu_bn-none", "relu_bn-before", "relu_bn-before-sb",
                                           "relu_bn-after", "relu_bn-after-sb"};
    for (const auto& n : rows) {
      std::string ref = "not recorded | not recorded";
      for (const auto& p : kCaffenetPlacement) {
        if (n == p.config) ref = fmt::format("{:.3f} | {:.2f}", p.top1, p.log_loss);
      }
      md += fmt::format("| {} | {} | {} | {} |\n", n, acc(n), loss(n), ref);
    }
    md +=
        "\n| published ordering | caffenet top-1 difference | here (mean ± standard error) | "
        "verdict |\n|---|---:|---:|---|\n";
    md += verdict(groups.at("relu_bn-after"), groups.at("relu_bn-before"), 0.499 - 0.474);
    md += verdict(groups.at("relu_bn-before-sb"), groups.at("relu_bn-before"), 0.478 - 0.474);
    md += verdict(groups.at("relu_bn-after-sb"), groups.at("relu_bn-after"), 0.493 - 0.499);
    figures.push_back({"placement", series(rows)});
  }
  if (wants(f, "activation")) {
    md +=
        "\n## Activations, without BN and with BN after the activation\n\n| activation | no BN "
        "accuracy | no BN log loss | BN after accuracy | BN after log loss | caffenet |\n"
        "|---|---:|---:|---:|---:|---|\n";
    std::vector<std::string> names;
    for (const char* a : {"relu", "elu", "sigmoid"}) {
      const std::string none = config_name(a, "none", false, 0);
      const std::string after = config_name(a, "after", false, 0);
      md += fmt::format("| {} | {} | {} | {} | {} | not recorded in REFERENCES.md |\n", a,
                        acc(none), loss(none), acc(after), loss(after));
      names.push_back(none);
      names.push_back(after);
    }
    figures.push_back({"activation", series(names)});
  }
  if (wants(f, "dropout")) {
    md +=
        "\n## Dropout after the dense block (ReLU, BN after)\n\n| dropout | test accuracy | test "
        "log loss | caffenet |\n|---|---:|---:|---|\n";
    std::vector<std::string> names;
    for (double d : {0.0, 0.2, 0.5}) {
      const std::string n = config_name("relu", "after", false, d);
      md += fmt::format("| {} | {} | {} | not recorded in REFERENCES.md |\n", d, acc(n), loss(n));
      names.push_back(n);
    }
    figures.push_back({"dropout", series(names)});
  }
  double seconds = 0;
  for (const auto& [name, g] : groups) {
    for (const auto& r : g.runs) seconds += r.seconds;
  }
  md += fmt::format("\n{} runs, {:.0f} s of training and evaluation.\n",
                    configs.size() * seeds.size(), seconds);
  write_file_atomically(out / "summary.md", md);
  fmt::print("\n{}", md);
  if (f.plots) {
    for (const auto& [table, s] : figures) {
      if (plot_accuracy(out, "accuracy-" + table, s)) {
        fmt::print("plot: {}\n", (out / ("accuracy-" + table + ".png")).string());
      }
    }
  }
  fmt::print("results in {}/ (summary.md; per configuration mean.csv and seed-*/)\n", out.string());
  return 0;
}

}  // namespace bnorm::train
