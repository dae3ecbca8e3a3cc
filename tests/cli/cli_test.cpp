// bnorm-train end to end on the tiny committed IDX subset: outputs, resume, every bad input.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_support.hpp"

namespace bnorm::cli_testing {
namespace {

// Small and fast: 300 training images, 100 test images.
const std::string kTiny =
    " --data " + kData.string() + "/tiny --batch 20 --hidden 32,16 --threads 1";

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// No temporary file of an atomic write, no gnuplot temporary: nothing partial left behind.
void expect_no_partial_files(const fs::path& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    EXPECT_FALSE(contains(e.path().filename().string(), ".tmp")) << e.path();
  }
}

TEST(CliTrain, CompareWritesTableCsvJsonAndPlots) {
  const fs::path out = fresh_dir("compare");
  const Result r = run_train("compare --bn none,before,after --steps 30 --eval-every 10" + kTiny +
                             " --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.output;
  // Plain progress lines (stdout is a pipe, not a terminal) and the final table.
  EXPECT_TRUE(contains(r.output, "[bn-before_lr-0.5] step 10/30")) << r.output;
  EXPECT_TRUE(contains(r.output, "test acc")) << r.output;
  EXPECT_TRUE(contains(r.output, "plot: " + (out / "accuracy.png").string())) << r.output;
  EXPECT_TRUE(fs::exists(out / "summary.txt"));
  EXPECT_GT(fs::file_size(out / "accuracy.png"), 1000u);
  for (const char* run : {"bn-none_lr-0.5", "bn-before_lr-0.5", "bn-after_lr-0.5"}) {
    const fs::path dir = out / run;
    EXPECT_EQ(slurp(dir / "metrics.csv").substr(0, 52),
              "step,train_loss,test_accuracy,p15,p50,p85,test_loss\n");
    EXPECT_GT(fs::file_size(dir / "percentiles.png"), 1000u);
    const auto json = nlohmann::json::parse(slurp(dir / "run.json"));
    EXPECT_EQ(json["config"]["steps"], 30);
    EXPECT_EQ(json["results"]["steps"], 30);
    EXPECT_TRUE(json["versions"].contains("bnorm"));
    EXPECT_GT(json["results"]["final_test_accuracy"].get<double>(), 0.0);
  }
  expect_no_partial_files(out);
}

TEST(CliTrain, ResumeContinuesBitwiseIdentically) {
  const fs::path straight = fresh_dir("straight");
  const fs::path split = fresh_dir("split");
  // Momentum and BN: velocities and moving statistics must round-trip; 7 is not a divisor of
  // the eval cadence, so the interrupted run ends between evaluations.
  const std::string common =
      " train --bn before --momentum 0.9 --eval-every 5 --checkpoint-every 7" + kTiny;
  ASSERT_EQ(run_train(common + " --steps 40 --out " + straight.string()).code, 0);
  const Result first = run_train(common + " --steps 19 --out " + split.string());
  ASSERT_EQ(first.code, 0) << first.output;
  const Result second = run_train(common + " --steps 40 --resume --out " + split.string());
  ASSERT_EQ(second.code, 0) << second.output;
  EXPECT_TRUE(contains(second.output, "training from step 19 to 40")) << second.output;
  EXPECT_EQ(slurp(straight / "checkpoint.safetensors"), slurp(split / "checkpoint.safetensors"));
  EXPECT_EQ(slurp(straight / "metrics.csv"), slurp(split / "metrics.csv"));
  expect_no_partial_files(split);
}

TEST(CliTrain, ResumeRejectsADifferentConfigurationNamingTheFlag) {
  const fs::path out = fresh_dir("resume_mismatch");
  ASSERT_EQ(
      run_train("train --steps 10 --checkpoint-every 10" + kTiny + " --out " + out.string()).code,
      0);
  const Result r =
      run_train("train --steps 20 --resume --lr 0.1" + kTiny + " --out " + out.string());
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--lr is 0.1 now; expected 0.5")) << r.output;
}

TEST(CliTrain, ResumeWithoutOrWithACorruptCheckpointFails) {
  const fs::path out = fresh_dir("resume_missing");
  Result r = run_train("train --steps 10 --resume" + kTiny + " --out " + out.string());
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, (out / "checkpoint.safetensors").string() + ": no such file"))
      << r.output;
  {
    std::ofstream corrupt(out / "checkpoint.safetensors", std::ios::binary);
    corrupt << "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":";
  }
  r = run_train("train --steps 10 --resume" + kTiny + " --out " + out.string());
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "checkpoint.safetensors")) << r.output;
  EXPECT_FALSE(fs::exists(out / "metrics.csv"));
}

TEST(CliTrain, MissingDatasetSaysHowToInstallIt) {
  const fs::path out = fresh_dir("missing") / "out";
  const Result r = run_train("train --steps 5 --data /nonexistent/fashion --out " + out.string());
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "/nonexistent/fashion")) << r.output;
  EXPECT_TRUE(contains(r.output, "apt-get install dataset-fashion-mnist")) << r.output;
  EXPECT_TRUE(contains(r.output, "--data DIR")) << r.output;
  EXPECT_FALSE(fs::exists(out)) << "no output for a run that could not start";
}

TEST(CliTrain, MalformedFileGivesTheReadersMessageAndExitCode2) {
  const fs::path data = fresh_dir("malformed_data");
  for (const char* f :
       {"train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
    fs::copy_file(kData / "tiny" / f, data / f);
  }
  fs::copy_file(kData / "malformed" / "bad-magic-images", data / "train-images-idx3-ubyte");
  const fs::path out = fresh_dir("malformed_out") / "out";
  const Result r = run_train("train --steps 5 --data " + data.string() + " --out " + out.string());
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, (data / "train-images-idx3-ubyte").string() +
                                     ": magic bytes 0-1: expected 00 00 (an IDX file), got 1f 00"))
      << r.output;
  EXPECT_FALSE(fs::exists(out));
}

TEST(CliTrain, BadFlagsGiveCli11sMessageAndExitCode2) {
  const fs::path out = fresh_dir("flags");
  const std::pair<std::string, std::string> cases[] = {
      {"train --steps -5", "--steps"},
      {"train --steps many", "--steps"},
      {"train --bn sideways", "--bn"},
      {"train --activation softplus", "--activation"},
      {"train --bogus", "--bogus"},
      {"", "subcommand"},
      {"train --lr 0", "--lr"},
      {"train --bn-momentum 1.5", "--bn-momentum"},
      // Semantic checks of the engine, same exit code, message naming the flag.
      {"train --hidden 100,0", "--hidden width 0"},
      {"train --virtual-batch 7", "--virtual-batch 7"},
      {"train --track-unit 40", "--track-unit 40"},
      {"train --arch c0", "--arch 'c0'"},
      {"train --arch c4,f8,p", "--arch 'c4,f8,p'"},
      {"train --lr-drop 5", "--lr-drop '5'; expected STEP:FACTOR"},
      {"train --lr-drop 5:0", "--lr-drop factor 0"},
      {"train --lr-drop 9:0.1,3:0.1", "--lr-drop step 3"},
      {"train --dropout 1.5", "--dropout"},
      {"train --activation elu --bn-scale-bias maybe", "--bn-scale-bias"},
  };
  for (const auto& [args, needle] : cases) {
    const std::string steps = contains(args, "--steps") ? "" : " --steps 2";
    const Result r = run_train(args + kTiny + steps + " --out " + (out / "o").string());
    EXPECT_EQ(r.code, 2) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, needle)) << args << "\n" << r.output;
    EXPECT_FALSE(contains(r.output, "terminate called")) << r.output;
    EXPECT_FALSE(fs::exists(out / "o"))
        << args << ": output written for a run that could not start";
  }
}

// A CNN with BN, dropout, an lr drop and several seeds: per-seed runs, the mean curve per
// configuration, mean and spread in the summary.
TEST(CliCnn, CompareOverSeedsWritesMeanAndSpread) {
  const fs::path out = fresh_dir("cnn_seeds");
  const Result r = run_train(
      "compare --arch c4,p,f16 --activation relu --bn none,after --bn-scale-bias false --dropout "
      "0.2 --lr 0.05 --momentum 0.9 --lr-drop 10:0.1 --seeds 1,2 --steps 15 --eval-every 5" +
      kTiny + " --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "configuration")) << r.output;
  for (const char* config : {"bn-none_lr-0.05", "bn-after_lr-0.05"}) {
    for (const char* seed : {"seed-1", "seed-2"}) {
      const auto json = nlohmann::json::parse(slurp(out / config / seed / "run.json"));
      EXPECT_EQ(json["config"]["arch"], "c4,p,f16");
      EXPECT_EQ(json["config"]["dropout"], 0.2);
      EXPECT_EQ(json["config"]["lr_drop"][0], "10:0.1");
      EXPECT_EQ(json["config"]["bn_scale_bias"], false);
    }
    EXPECT_EQ(slurp(out / config / "mean.csv").substr(0, 52),
              "step,train_loss,test_accuracy,p15,p50,p85,test_loss\n");
  }
  // Different seeds, different runs.
  EXPECT_NE(slurp(out / "bn-after_lr-0.05" / "seed-1" / "metrics.csv"),
            slurp(out / "bn-after_lr-0.05" / "seed-2" / "metrics.csv"));
  EXPECT_GT(fs::file_size(out / "accuracy.png"), 1000u);
  expect_no_partial_files(out);
}

TEST(CliCnn, ResumeWithDropoutAndLrDropContinuesBitwiseIdentically) {
  const fs::path straight = fresh_dir("cnn_straight");
  const fs::path split = fresh_dir("cnn_split");
  const std::string common =
      " train --arch c4,p,c4,f16 --activation elu --bn before --dropout 0.5 --momentum 0.9 "
      "--lr 0.05 --lr-drop 12:0.1,30:0.5 --eval-every 5 --checkpoint-every 7 --no-plots" +
      kTiny;
  ASSERT_EQ(run_train(common + " --steps 40 --out " + straight.string()).code, 0);
  ASSERT_EQ(run_train(common + " --steps 19 --out " + split.string()).code, 0);
  const Result second = run_train(common + " --steps 40 --resume --out " + split.string());
  ASSERT_EQ(second.code, 0) << second.output;
  EXPECT_EQ(slurp(straight / "checkpoint.safetensors"), slurp(split / "checkpoint.safetensors"));
  EXPECT_EQ(slurp(straight / "metrics.csv"), slurp(split / "metrics.csv"));
  // Another thread count: the same bits (the engine's results do not depend on it).
  const fs::path two = fresh_dir("cnn_two_threads");
  std::string with_two = common;
  with_two.replace(with_two.find("--threads 1"), 11, "--threads 2");
  ASSERT_EQ(run_train(with_two + " --steps 40 --out " + two.string()).code, 0);
  EXPECT_EQ(slurp(straight / "checkpoint.safetensors"), slurp(two / "checkpoint.safetensors"));
}

TEST(CliStudy, CaffenetWritesTheTablesWithThePublishedFigures) {
  const fs::path out = fresh_dir("study");
  const Result r = run_train(
      "study caffenet --arch c4,p,f8 --steps 6 --eval-every 3 --seeds 1,2 "
      "--batch 20 --threads 1 --tables placement,dropout --data " +
      kData.string() + "/tiny --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string md = slurp(out / "summary.md");
  for (const char* needle :
       {"## BN placement (ReLU)", "| relu_bn-before-sb |", "0.478 | 2.33", "| relu_bn-after |",
        "0.499 | 2.21", "relu_bn-after − relu_bn-before | +0.0250", "## Dropout", "| 0.5 |"}) {
    EXPECT_TRUE(contains(md, needle)) << needle << "\n" << md;
  }
  EXPECT_FALSE(contains(md, "## Activations"));
  EXPECT_TRUE(fs::exists(out / "relu_bn-after-sb" / "seed-2" / "metrics.csv"));
  EXPECT_TRUE(fs::exists(out / "relu_bn-after_dropout-0.2" / "mean.csv"));
  EXPECT_GT(fs::file_size(out / "accuracy-placement.png"), 1000u);
  expect_no_partial_files(out);
}

}  // namespace
}  // namespace bnorm::cli_testing
