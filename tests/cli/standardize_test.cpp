// bnorm-train --inputs: runs on inputs standardized per pixel (a StandardScaler fitted on the
// training set) beside runs on raw pixels, on the tiny committed IDX subset.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_support.hpp"

namespace bnorm::cli_testing {
namespace {

const std::string kTiny =
    " --data " + kData.string() + "/tiny --batch 20 --hidden 32,16 --threads 1 --no-plots";

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

nlohmann::json run_json(const fs::path& dir) {
  return nlohmann::json::parse(slurp(dir / "run.json"));
}

TEST(CliStandardize, CompareRunsRawAndStandardizedInputsSideBySide) {
  const fs::path out = fresh_dir("standardize_compare");
  const Result r = run_train(
      "compare --inputs raw,standardize --bn none,before --steps 20 "
      "--eval-every 10" +
      kTiny + " --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* bn : {"none", "before"}) {
    const fs::path raw = out / (std::string("bn-") + bn + "_lr-0.5");
    const fs::path standardized = out / (std::string("bn-") + bn + "_lr-0.5_standardized");
    EXPECT_TRUE(contains(r.output, standardized.filename().string() + " ")) << r.output;
    const auto a = run_json(raw), b = run_json(standardized);
    EXPECT_EQ(a["config"]["inputs"], "raw");
    EXPECT_EQ(b["config"]["inputs"], "standardize");
    // Same seed, same data order, same initial weights: only the inputs differ, and so do the
    // results.
    EXPECT_NE(a["results"]["final_train_loss"], b["results"]["final_train_loss"]) << bn;
  }
}

// `compare` and `train` build the same run: identical metrics.
TEST(CliStandardize, TrainAndCompareAgree) {
  const fs::path compare = fresh_dir("standardize_agree_compare");
  const fs::path train = fresh_dir("standardize_agree_train");
  const std::string common = " --bn before --steps 15 --eval-every 5" + kTiny;
  ASSERT_EQ(run_train("compare --inputs standardize" + common + " --out " + compare.string()).code,
            0);
  ASSERT_EQ(run_train("train --inputs standardize" + common + " --out " + train.string()).code, 0);
  EXPECT_EQ(slurp(compare / "bn-before_lr-0.5_standardized" / "metrics.csv"),
            slurp(train / "metrics.csv"));
}

// The scaler is refitted on resume (it is a function of the training set): bitwise the same
// run. A checkpoint of raw inputs does not resume with standardized ones.
TEST(CliStandardize, ResumeRefitsTheScalerAndRejectsOtherInputs) {
  const fs::path straight = fresh_dir("standardize_straight");
  const fs::path split = fresh_dir("standardize_split");
  const std::string common =
      " train --inputs standardize --bn before --eval-every 5 --checkpoint-every 7" + kTiny;
  ASSERT_EQ(run_train(common + " --steps 30 --out " + straight.string()).code, 0);
  ASSERT_EQ(run_train(common + " --steps 14 --out " + split.string()).code, 0);
  const Result resumed = run_train(common + " --steps 30 --resume --out " + split.string());
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_EQ(slurp(straight / "checkpoint.safetensors"), slurp(split / "checkpoint.safetensors"));
  EXPECT_EQ(slurp(straight / "metrics.csv"), slurp(split / "metrics.csv"));

  const fs::path raw = fresh_dir("standardize_raw");
  ASSERT_EQ(
      run_train("train --steps 7 --checkpoint-every 7" + kTiny + " --out " + raw.string()).code, 0);
  const Result r = run_train("train --inputs standardize --steps 14 --resume" + kTiny + " --out " +
                             raw.string());
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--inputs is \"standardize\" now")) << r.output;
}

TEST(CliStandardize, UnknownInputsAreRejectedByName) {
  const fs::path out = fresh_dir("standardize_flags");
  for (const char* sub : {"train --inputs whiten", "compare --inputs raw,whiten"}) {
    const Result r = run_train(std::string(sub) + " --steps 2" + kTiny + " --out " + out.string());
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "--inputs")) << r.output;
  }
}

}  // namespace
}  // namespace bnorm::cli_testing
