// The paper's experiment (Ioffe & Szegedy 2015, section 4.1) on the real Fashion-MNIST, through
// bnorm-train: seeded and deterministic. Criteria fixed in issue 6 before any measurement:
//   lr 0.1: with BN >= 0.75 test accuracy within 3,000 steps; without BN <= 0.30 throughout.
//   lr 0.5: at step 1,000 BN leads by >= 0.2.
//   The spread p85 - p15 of the tracked last-hidden-layer sigmoid input stays within a factor 2
//   of its initial value with BN and grows by more than 2x without.
// "Initial value" is the first evaluation after training starts (step 500), not step 0: at
// step 0 the weights are N(0, 0.01^2), every image gives almost the same sigmoid input
// (spread ~1e-4 without BN) and the BN network's unit-variance input has not yet taken the
// shape training gives it; the figures of both are printed and reported.
// Full 10,000-image test set; 4 runs x 3,000 steps.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <sstream>
#include <vector>

#include "cli_support.hpp"

namespace bnorm::cli_testing {
namespace {

const fs::path kFashion = "/usr/share/datasets/fashion-mnist";

struct Row {
  long step;
  double loss, acc, p15, p50, p85;
  [[nodiscard]] double spread() const { return p85 - p15; }
};

std::vector<Row> read_csv(const fs::path& p) {
  std::istringstream in(slurp(p));
  std::string line;
  std::getline(in, line);
  std::vector<Row> rows;
  while (std::getline(in, line)) {
    Row r{};
    std::replace(line.begin(), line.end(), ',', ' ');
    std::istringstream fields(line);
    std::string loss;
    fields >> r.step >> loss >> r.acc >> r.p15 >> r.p50 >> r.p85;
    r.loss = std::strtod(loss.c_str(), nullptr);
    rows.push_back(r);
  }
  return rows;
}

const Row& at(const std::vector<Row>& rows, long step) {
  for (const auto& r : rows) {
    if (r.step == step) return r;
  }
  throw std::runtime_error("no row at step " + std::to_string(step));
}

class FashionMnist : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(fs::exists(kFashion / "train-images-idx3-ubyte.gz"))
        << "Fashion-MNIST is missing: scripts/bootstrap installs dataset-fashion-mnist";
    out_ = new fs::path(fresh_dir("fashion"));
    const Result r = run_train(
        "compare --lr 0.1,0.5 --bn none,before --steps 3000 --eval-every 500"
        " --seed 1 --threads 1 --no-plots --out " +
        out_->string());
    ASSERT_EQ(r.code, 0) << r.output;
    std::printf("%s\n", slurp(*out_ / "summary.txt").c_str());
  }
  static void TearDownTestSuite() { delete out_; }
  static std::vector<Row> log(const char* bn, const char* lr) {
    return read_csv(*out_ / ("bn-" + std::string(bn) + "_lr-" + lr) / "metrics.csv");
  }
  static fs::path* out_;
};
fs::path* FashionMnist::out_ = nullptr;

TEST_F(FashionMnist, AtLearningRate01OnlyTheBnNetworkLearns) {
  const auto bn = log("before", "0.1");
  const auto plain = log("none", "0.1");
  double best_bn = 0, best_plain = 0;
  for (const auto& r : bn) best_bn = std::max(best_bn, r.acc);
  for (const auto& r : plain) best_plain = std::max(best_plain, r.acc);
  std::printf("lr 0.1, 3000 steps: best test accuracy BN %.4f, no BN %.4f\n", best_bn, best_plain);
  EXPECT_GE(best_bn, 0.75);
  EXPECT_LE(best_plain, 0.30);
}

TEST_F(FashionMnist, AtLearningRate05BnLeadsAt1000Steps) {
  const double bn = at(log("before", "0.5"), 1000).acc;
  const double plain = at(log("none", "0.5"), 1000).acc;
  std::printf("lr 0.5, step 1000: test accuracy BN %.4f, no BN %.4f, lead %.4f\n", bn, plain,
              bn - plain);
  EXPECT_GE(bn - plain, 0.2);
}

TEST_F(FashionMnist, TrackedSigmoidInputIsStableWithBnAndDriftsWithout) {
  for (const char* lr : {"0.1", "0.5"}) {
    const auto bn = log("before", lr);
    const auto plain = log("none", lr);
    const double bn_ref = at(bn, 500).spread();
    const double plain_ref = at(plain, 500).spread();
    std::printf(
        "lr %s spread p85-p15: BN step0 %.4g step500 %.4g final %.4g | no BN step0 %.4g "
        "step500 %.4g final %.4g\n",
        lr, bn.front().spread(), bn_ref, bn.back().spread(), plain.front().spread(), plain_ref,
        plain.back().spread());
    for (const auto& r : bn) {
      if (r.step < 500) continue;
      EXPECT_LE(r.spread(), 2 * bn_ref) << "lr " << lr << " BN step " << r.step;
      EXPECT_GE(r.spread(), bn_ref / 2) << "lr " << lr << " BN step " << r.step;
    }
    EXPECT_GT(plain.back().spread(), 2 * plain_ref) << "lr " << lr;
  }
}

TEST_F(FashionMnist, RunsAreDeterministic) {
  // The same seed gives the same CSV: rerun one configuration for 500 steps and
  // compare with the logged rows of the first run.
  const fs::path again = fresh_dir("fashion_again");
  const Result r = run_train(
      "train --lr 0.5 --bn before --steps 500 --eval-every 500 --seed 1"
      " --threads 1 --no-plots --out " +
      again.string());
  ASSERT_EQ(r.code, 0) << r.output;
  const auto first = log("before", "0.5");
  const auto second = read_csv(again / "metrics.csv");
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[1].acc, at(first, 500).acc);
  EXPECT_EQ(second[1].p50, at(first, 500).p50);
}

}  // namespace
}  // namespace bnorm::cli_testing
