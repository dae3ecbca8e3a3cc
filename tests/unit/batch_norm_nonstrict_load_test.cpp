// Non-strict load (PyTorch load_state_dict(strict=False)): the keys PyTorch 1.13 reported for
// the same file (tests/golden/batch_norm/make_golden.py, case bn1d_nonstrict) and the state it
// left; missing tensors keep their values, unexpected ones are reported, and a shape or dtype
// mismatch still refuses the whole file with no state change.
#include <gtest/gtest.h>

#include <algorithm>
#include <bnorm/batch_norm.hpp>
#include <bnorm/error.hpp>
#include <bnorm/safetensors.hpp>
#include <filesystem>
#include <string>
#include <vector>

namespace bnorm {
namespace {

namespace st = safetensors;
const std::filesystem::path kGolden = std::filesystem::path(BNORM_TESTS_DIR) / "golden/batch_norm";

std::filesystem::path temp_file(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / "bnorm_nonstrict_load_test";
  std::filesystem::create_directories(dir);
  return dir / (std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
                name);
}

// The list as Python's json.dumps writes it (how the generator stored PyTorch's result).
std::string json_list(const std::vector<std::string>& keys) {
  std::string out = "[";
  for (std::size_t i = 0; i < keys.size(); ++i) out += (i ? ", \"" : "\"") + keys[i] + "\"";
  return out + "]";
}

std::vector<float> values(const st::File& f, const std::string& name) {
  return f.tensors.at(name).values<float>(name);
}
std::vector<float> copy(std::span<const float> s) {
  return {s.begin(), s.end()};
}

TEST(NonStrictLoad, ReportsTheKeysPyTorchReportsAndLeavesItsState) {
  const st::File golden = st::load(kGolden / "bn1d_nonstrict.safetensors");
  ASSERT_EQ(golden.metadata.at("bnorm.golden_format"), "1");
  BatchNorm bn(3, BatchNormOptions::pytorch());
  const auto set = [&](std::span<float> slot, const std::string& name) {
    const auto v = values(golden, name);
    std::copy(v.begin(), v.end(), slot.begin());
  };
  set(bn.gamma(), "before.weight");
  set(bn.beta(), "before.bias");
  set(bn.moving_mean(), "before.running_mean");
  set(bn.moving_variance(), "before.running_var");
  const std::int64_t tracked_before =
      golden.tensors.at("before.num_batches_tracked").values<std::int64_t>("n")[0];
  ASSERT_GT(tracked_before, 0);
  bn.set_num_batches_tracked(tracked_before);

  const LoadResult result = bn.load(kGolden / "bn1d_nonstrict.state.safetensors", "bn.", false);
  EXPECT_EQ(json_list(result.missing_keys), golden.metadata.at("missing_keys"));
  EXPECT_EQ(json_list(result.unexpected_keys), golden.metadata.at("unexpected_keys"));
  EXPECT_EQ(result.missing_keys, (std::vector<std::string>{"bn.bias", "bn.running_var"}));
  // Loaded and kept values alike are bitwise PyTorch's state after its load.
  EXPECT_EQ(copy(bn.gamma()), values(golden, "after.weight"));
  EXPECT_EQ(copy(bn.beta()), values(golden, "after.bias"));
  EXPECT_EQ(copy(bn.moving_mean()), values(golden, "after.running_mean"));
  EXPECT_EQ(copy(bn.moving_variance()), values(golden, "after.running_var"));
  EXPECT_NE(values(golden, "after.weight"), values(golden, "before.weight"));
  EXPECT_EQ(values(golden, "after.bias"), values(golden, "before.bias"));
  // num_batches_tracked absent: not reported (as PyTorch); kept, where PyTorch 1.13 resets it
  // to 0 (docs/semantics.md, "Non-strict load").
  EXPECT_EQ(golden.tensors.at("after.num_batches_tracked").values<std::int64_t>("n")[0], 0);
  EXPECT_EQ(bn.num_batches_tracked(), tracked_before);
}

TEST(NonStrictLoad, StrictLoadOfTheSameFileRefusesIt) {
  BatchNorm bn(3, BatchNormOptions::pytorch());
  EXPECT_THROW(bn.load(kGolden / "bn1d_nonstrict.state.safetensors", "bn."), Error);
  EXPECT_EQ(copy(bn.gamma()), std::vector<float>(3, 1.0f));
}

// A shape or a dtype mismatch refuses the whole file even when the other tensors are fine.
TEST(NonStrictLoad, MismatchStillRefusesTheWholeFile) {
  const std::vector<float> weight = {2, 3, 4}, wrong_shape = {1, 2};
  const std::vector<double> wrong_dtype = {1, 2, 3};
  const auto shape_file = temp_file("shape.safetensors");
  const auto dtype_file = temp_file("dtype.safetensors");
  st::save(shape_file,
           std::vector<st::TensorRef>{st::TensorRef::of<float>("weight", weight),
                                      st::TensorRef::of<float>("running_mean", wrong_shape)},
           {});
  st::save(dtype_file,
           std::vector<st::TensorRef>{st::TensorRef::of<float>("weight", weight),
                                      st::TensorRef::of<double>("running_var", wrong_dtype)},
           {});
  for (const auto& path : {shape_file, dtype_file}) {
    BatchNorm bn(3, BatchNormOptions::pytorch());
    bn.set_num_batches_tracked(7);
    try {
      (void)bn.load(path, "", false);
      ADD_FAILURE() << path << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path == shape_file ? "running_mean" : "running_var"),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(copy(bn.gamma()), std::vector<float>(3, 1.0f)) << "weight changed";
    EXPECT_EQ(bn.num_batches_tracked(), 7);
  }
}

// State the layer does not have is unexpected (PyTorch: running_mean into a
// track_running_stats=False module); Keras names are reported with Keras names.
TEST(NonStrictLoad, StateTheLayerLacksIsUnexpectedInEitherNaming) {
  BatchNorm keras(2);
  keras.gamma()[0] = 5;
  keras.moving_mean()[1] = -3;
  const auto path = temp_file("keras.safetensors");
  keras.save(path);
  auto options = BatchNormOptions::keras();
  options.center = false;
  options.track_running_stats = false;
  BatchNorm bn(2, options);
  const LoadResult result = bn.load(path, "", false);
  EXPECT_TRUE(result.missing_keys.empty());
  EXPECT_EQ(result.unexpected_keys,
            (std::vector<std::string>{"beta", "moving_mean", "moving_variance"}));
  EXPECT_EQ(bn.gamma()[0], 5.0f);
  EXPECT_THROW(bn.load(path), Error);  // strict: the same file is refused
}

// Nothing under the prefix: everything is missing (named in the layer's convention), tensors of
// other layers are not this layer's business, and nothing changes.
TEST(NonStrictLoad, FileWithoutThisLayersStateReportsEverythingMissing) {
  const std::vector<float> other = {1, 2, 3};
  const auto path = temp_file("other.safetensors");
  st::save(path, std::vector<st::TensorRef>{st::TensorRef::of<float>("conv.weight", other)}, {});
  BatchNorm torch_like(3, BatchNormOptions::pytorch());
  torch_like.set_num_batches_tracked(4);
  const LoadResult a = torch_like.load(path, "bn.", false);
  EXPECT_EQ(a.missing_keys, (std::vector<std::string>{"bn.weight", "bn.bias", "bn.running_mean",
                                                      "bn.running_var"}));
  EXPECT_TRUE(a.unexpected_keys.empty());
  EXPECT_EQ(torch_like.num_batches_tracked(), 4);
  BatchNorm keras_like(3);
  const LoadResult b = keras_like.load(path, "bn.", false);
  EXPECT_EQ(b.missing_keys, (std::vector<std::string>{"bn.gamma", "bn.beta", "bn.moving_mean",
                                                      "bn.moving_variance"}));
}

}  // namespace
}  // namespace bnorm
