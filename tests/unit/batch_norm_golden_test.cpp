// Golden fixtures from PyTorch 1.13 (tests/golden/batch_norm/make_golden.py): BatchNorm1d and
// BatchNorm2d trained a few steps with momentum 0.1 and momentum=None. bnorm with the PyTorch
// preset reproduces the outputs, gradients and running statistics of every step, then loads the
// final state_dict (PyTorch names) and reproduces an eval-mode forward and backward, all within
// fp32 tolerances (rtol 1.3e-6, atol 1e-5: torch.testing's defaults for float32).
#include <gtest/gtest.h>

#include <bnorm/batch_norm.hpp>
#include <bnorm/safetensors.hpp>
#include <cmath>
#include <filesystem>
#include <string>

namespace bnorm {
namespace {

namespace st = safetensors;
const std::filesystem::path kGolden = std::filesystem::path(BNORM_TESTS_DIR) / "golden/batch_norm";
constexpr double kRtol = 1.3e-6;
constexpr double kAtol = 1e-5;

struct Fixture {
  st::File file;
  std::vector<float> get(const std::string& name) const {
    const auto it = file.tensors.find(name);
    if (it == file.tensors.end()) throw std::runtime_error("fixture lacks " + name);
    return it->second.values<float>(name);
  }
  std::vector<std::int64_t> shape(const std::string& name) const {
    return file.tensors.at(name).shape;
  }
  std::int64_t get_i64(const std::string& name) const {
    return file.tensors.at(name).values<std::int64_t>(name).at(0);
  }
};

void expect_close(std::span<const float> actual, const std::vector<float>& expected,
                  const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  std::size_t bad = 0, zeros = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double a = actual[i], e = expected[i];
    if (!(std::abs(a - e) <= kAtol + kRtol * std::abs(e))) {
      if (bad++ < 5) ADD_FAILURE() << what << "[" << i << "]: " << a << " vs torch " << e;
    }
    zeros += e == 0;
  }
  EXPECT_EQ(bad, 0u) << what;
  // Zero-trust rule: a comparison against mostly zeros proves little.
  EXPECT_LE(zeros * 10, expected.size() * 3) << what << " is degenerate";
}

class Golden : public ::testing::TestWithParam<const char*> {};

TEST_P(Golden, TrainingStepsAndLoadedStateReproducePyTorch) {
  const std::string name = GetParam();
  Fixture f{st::load(kGolden / (name + ".safetensors"))};
  ASSERT_EQ(f.file.metadata.at("bnorm.golden_format"), "1");
  const std::string momentum_text = f.file.metadata.at("momentum");
  const std::optional<double> momentum =
      momentum_text == "none" ? std::nullopt : std::optional<double>(std::stod(momentum_text));
  const int steps = std::stoi(f.file.metadata.at("steps"));
  auto options = BatchNormOptions::pytorch(momentum);
  options.epsilon = std::stod(f.file.metadata.at("eps"));
  const auto init_weight = f.get("init.weight");
  const auto C = static_cast<std::int64_t>(init_weight.size());

  BatchNorm bn(C, options);
  std::copy(init_weight.begin(), init_weight.end(), bn.gamma().begin());
  const auto init_bias = f.get("init.bias");
  std::copy(init_bias.begin(), init_bias.end(), bn.beta().begin());
  for (int k = 1; k <= steps; ++k) {
    const std::string p = "step" + std::to_string(k) + ".";
    const auto x = f.get(p + "x");
    const auto dy = f.get(p + "dy");
    const auto shape = f.shape(p + "x");
    std::vector<float> y(x.size()), dx(x.size());
    bn.forward(x, shape, y, true);
    bn.backward(x, dy, dx);
    expect_close(y, f.get(p + "y"), name + " " + p + "y");
    expect_close(dx, f.get(p + "dx"), name + " " + p + "dx");
    expect_close(bn.gamma_grad(), f.get(p + "dweight"), name + " " + p + "dweight");
    expect_close(bn.beta_grad(), f.get(p + "dbias"), name + " " + p + "dbias");
    expect_close(bn.moving_mean(), f.get(p + "running_mean"), name + " " + p + "running_mean");
    expect_close(bn.moving_variance(), f.get(p + "running_var"), name + " " + p + "running_var");
    EXPECT_EQ(bn.num_batches_tracked(), f.get_i64(p + "num_batches_tracked"));
    // PyTorch's SGD step, taken from the fixture so that errors do not compound.
    const auto w = f.get(p + "weight");
    const auto b = f.get(p + "bias");
    std::copy(w.begin(), w.end(), bn.gamma().begin());
    std::copy(b.begin(), b.end(), bn.beta().begin());
  }

  // A fresh layer loads PyTorch's state_dict and reproduces eval mode.
  BatchNorm loaded(C, options);
  loaded.load(kGolden / (name + ".state.safetensors"));
  EXPECT_EQ(loaded.num_batches_tracked(), steps);
  const auto x = f.get("eval.x");
  const auto dy = f.get("eval.dy");
  std::vector<float> y(x.size()), dx(x.size());
  loaded.forward(x, f.shape("eval.x"), y, false);
  loaded.backward(x, dy, dx);
  expect_close(y, f.get("eval.y"), name + " eval.y");
  expect_close(dx, f.get("eval.dx"), name + " eval.dx");
  expect_close(loaded.gamma_grad(), f.get("eval.dweight"), name + " eval.dweight");
  expect_close(loaded.beta_grad(), f.get("eval.dbias"), name + " eval.dbias");
}

INSTANTIATE_TEST_SUITE_P(PyTorch, Golden,
                         ::testing::Values("bn2d_momentum0.1", "bn2d_cumulative",
                                           "bn1d_momentum0.1", "bn1d_cumulative",
                                           "bn1d_ncl_momentum0.1"),
                         [](const ::testing::TestParamInfo<const char*>& param) {
                           std::string s = param.param;
                           for (auto& ch : s) {
                             if (ch == '.') ch = '_';
                           }
                           return s;
                         });

}  // namespace
}  // namespace bnorm
