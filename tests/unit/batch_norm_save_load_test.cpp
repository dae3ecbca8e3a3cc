// BatchNorm save/load: save -> load -> forward is bitwise equal for every option set; a crash
// before the rename keeps the old file; PyTorch names load; every rejected file says why.
#include <gtest/gtest.h>

#include <bnorm/batch_norm.hpp>
#include <bnorm/error.hpp>
#include <bnorm/io.hpp>
#include <bnorm/safetensors.hpp>
#include <filesystem>
#include <string>

#include "layer_reference.hpp"

namespace bnorm {
namespace {

using testing::random_values;
const std::filesystem::path kMalformed =
    std::filesystem::path(BNORM_TESTS_DIR) / "golden/malformed";

std::filesystem::path temp_dir() {
  const auto dir = std::filesystem::temp_directory_path() /
                   (std::string("bnorm_save_load_test_") +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::create_directories(dir);
  return dir;
}

std::vector<std::pair<std::string, BatchNormOptions>> option_sets() {
  std::vector<std::pair<std::string, BatchNormOptions>> sets;
  sets.emplace_back("keras", BatchNormOptions::keras());
  sets.emplace_back("pytorch", BatchNormOptions::pytorch());
  sets.emplace_back("pytorch_cumulative", BatchNormOptions::pytorch(std::nullopt));
  auto renorm = BatchNormOptions::keras();
  renorm.renorm = true;
  renorm.renorm_clipping = {2, 0.5, 1};
  sets.emplace_back("renorm", renorm);
  auto ghost = BatchNormOptions::keras();
  ghost.virtual_batch_size = 2;
  sets.emplace_back("ghost", ghost);
  auto bare = BatchNormOptions::keras();
  bare.center = false;
  bare.scale = false;
  sets.emplace_back("no_center_no_scale", bare);
  auto no_stats = BatchNormOptions::pytorch();
  no_stats.track_running_stats = false;
  sets.emplace_back("no_running_stats", no_stats);
  auto mixed = BatchNormOptions::pytorch(0.3);
  mixed.moving_variance = MovingVariance::kBiased;
  mixed.gamma_regularizer = Regularizer::l2_only();
  sets.emplace_back("mixed", mixed);
  return sets;
}

template <class T>
void check_round_trip(const std::string& name, BatchNormOptions o) {
  if (o.axis == -1) o.axis = 1;  // both presets on the same NCL shape
  const std::vector<std::int64_t> shape = {4, 3, 5};
  BasicBatchNorm<T> a(3, o);
  for (int step = 0; step < 3; ++step) {  // train a little so that every state is non-trivial
    const auto x = random_values<T>(60, 10 + step, 2.0, step);
    std::vector<T> y(60);
    a.forward(x, shape, y, true);
    for (std::size_t c = 0; c < a.gamma().size(); ++c) a.gamma()[c] += T(0.125) * T(step + 1);
    for (std::size_t c = 0; c < a.beta().size(); ++c) a.beta()[c] -= T(0.25) * T(step + 1);
  }
  const auto path = temp_dir() / (name + ".safetensors");
  a.save(path);
  BasicBatchNorm<T> b(3, o);
  b.load(path);
  EXPECT_EQ(b.num_batches_tracked(), a.num_batches_tracked()) << name;
  const auto x = random_values<T>(60, 99, 3.0, 1.0);
  for (const bool training : {false, true}) {
    std::vector<T> ya(60), yb(60);
    a.forward(x, shape, ya, training);
    b.forward(x, shape, yb, training);
    EXPECT_EQ(ya, yb) << name << " training=" << training;
  }
  const auto eq = [&](auto sa, auto sb, const char* what) {
    ASSERT_EQ(sa.size(), sb.size()) << name << " " << what;
    for (std::size_t i = 0; i < sa.size(); ++i) EXPECT_EQ(sa[i], sb[i]) << name << " " << what;
  };
  eq(a.moving_mean(), b.moving_mean(), "moving_mean");
  eq(a.moving_variance(), b.moving_variance(), "moving_variance");
  eq(a.renorm_mean(), b.renorm_mean(), "renorm_mean");
  eq(a.renorm_stddev(), b.renorm_stddev(), "renorm_stddev");
  eq(a.moving_stddev(), b.moving_stddev(), "moving_stddev");
}

TEST(BatchNormSaveLoad, SaveLoadForwardIsBitwiseForEveryOptionSet) {
  for (const auto& [name, o] : option_sets()) {
    check_round_trip<float>(name, o);
    check_round_trip<double>(name + "_f64", o);
  }
}

TEST(BatchNormSaveLoad, FileRecordsFormatConventionsAndKerasNames) {
  BatchNorm bn(3, BatchNormOptions::pytorch(std::nullopt));
  const auto path = temp_dir() / "meta.safetensors";
  bn.save(path);
  const auto file = safetensors::load(path);
  EXPECT_EQ(file.metadata.at("bnorm.format"), "1");
  EXPECT_EQ(file.metadata.at("bnorm.momentum_convention"), "pytorch");
  EXPECT_EQ(file.metadata.at("bnorm.moving_variance"), "unbiased");
  EXPECT_EQ(file.metadata.at("bnorm.momentum"), "cumulative");
  EXPECT_EQ(file.metadata.at("bnorm.dtype"), "F32");
  for (const char* name : {"gamma", "beta", "moving_mean", "moving_variance"}) {
    EXPECT_TRUE(file.contains(name)) << name;
  }
  EXPECT_EQ(file.tensors.at("num_batches_tracked").shape.size(), 0u);
}

TEST(BatchNormSaveLoad, CrashBeforeRenameKeepsTheOldFile) {
  const auto path = temp_dir() / "crash.safetensors";
  BatchNorm a(2);
  a.gamma()[0] = 7.0f;
  a.save(path);
  const std::string before = read_file(path, 1 << 20);
  // What save() does, with a crash injected between the durable temp file and the rename.
  a.gamma()[0] = 9.0f;
  const float g[] = {9.0f, 1.0f};
  const safetensors::TensorRef t[] = {safetensors::TensorRef::of<float>("gamma", g)};
  EXPECT_THROW(write_file_atomically(path, safetensors::serialize(t, {}),
                                     [] { throw std::runtime_error("power cut"); }),
               std::runtime_error);
  EXPECT_EQ(read_file(path, 1 << 20), before);
  BatchNorm b(2);
  b.load(path);
  EXPECT_EQ(b.gamma()[0], 7.0f);
}

TEST(BatchNormSaveLoad, LoadsPyTorchNamesWithAPrefix) {
  const float w[] = {1.5f, 2.5f}, bias[] = {0.5f, -0.5f}, rm[] = {0.25f, 1.0f}, rv[] = {2.0f, 3.0f};
  const std::int64_t tracked[] = {17};
  const float other[] = {1.0f};
  namespace st = safetensors;
  const st::TensorRef t[] = {
      st::TensorRef::of<float>("bn1.weight", w),
      st::TensorRef::of<float>("bn1.bias", bias),
      st::TensorRef::of<float>("bn1.running_mean", rm),
      st::TensorRef::of<float>("bn1.running_var", rv),
      st::TensorRef::of<std::int64_t>("bn1.num_batches_tracked", tracked, {}),
      st::TensorRef::of<float>("fc.weight", other)};
  const auto path = temp_dir() / "torch.safetensors";
  st::save(path, t, {});
  BatchNorm bn(2, BatchNormOptions::pytorch());
  bn.load(path, "bn1.");
  EXPECT_EQ(bn.gamma()[1], 2.5f);
  EXPECT_EQ(bn.beta()[0], 0.5f);
  EXPECT_EQ(bn.moving_mean()[0], 0.25f);
  EXPECT_EQ(bn.moving_variance()[1], 3.0f);
  EXPECT_EQ(bn.num_batches_tracked(), 17);
}

void expect_load_error(const char* file, const std::vector<std::string>& parts) {
  BatchNorm bn(3);
  const std::vector<float> gamma_before(bn.gamma().begin(), bn.gamma().end());
  try {
    bn.load(kMalformed / file);
    ADD_FAILURE() << "accepted " << file;
  } catch (const Error& e) {
    for (const auto& p : parts) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
  // Nothing changed.
  for (std::size_t c = 0; c < 3; ++c) EXPECT_EQ(bn.gamma()[c], gamma_before[c]);
}

TEST(BatchNormSaveLoad, RejectedFilesSayWhyAndChangeNothing) {
  expect_load_error("layer_wrong_dtype.safetensors",
                    {"tensor 'gamma' has dtype F64; expected F32"});
  expect_load_error("layer_wrong_shape.safetensors",
                    {"tensor 'gamma' has shape [4]; expected [3]"});
  expect_load_error("layer_missing_tensor.safetensors", {"no tensor 'moving_variance'"});
  expect_load_error("layer_future_format.safetensors",
                    {"bnorm.format = '2'; expected '1'", "unexpected version"});
  expect_load_error("layer_pytorch_convention.safetensors",
                    {"saved with momentum_convention 'pytorch'; this layer uses 'keras'"});
  expect_load_error("layer_unexpected_tensor.safetensors",
                    {"unexpected tensor 'renorm_mean'", "renorm is false"});
  // Issue 13, finding 7: was "no tensor 'beta'".
  expect_load_error("layer_mixed_names.safetensors",
                    {"mixes Keras names (gamma, moving_mean, moving_variance) and PyTorch names "
                     "(bias); expected one naming"});
  expect_load_error("nul_then_junk.safetensors", {"NUL byte"});
  expect_load_error("truncated_header.safetensors", {"truncated"});
  expect_load_error("bad_json.safetensors", {"bad JSON header"});
  expect_load_error("header_too_large.safetensors", {"header too large"});
  expect_load_error("offsets_out_of_range.safetensors", {"out of range"});
  expect_load_error("dtype_shape_mismatch.safetensors", {"expected 16"});
  BatchNorm bn(3);
  EXPECT_THROW(bn.load(temp_dir() / "does_not_exist.safetensors"), Error);
}

}  // namespace
}  // namespace bnorm
