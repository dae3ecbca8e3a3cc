// libtorch (libtorch-dev, ATen) as a benchmark baseline: at::native_batch_norm (training and
// inference) and at::native_batch_norm_backward, the CPU kernels behind
// torch.nn.functional.batch_norm and its autograd, on tensors that wrap the shared inputs in the
// problem's layout (NHWC as a channels_last strided view). Outputs are allocated by ATen per
// call, as in PyTorch. Threads: at::set_num_threads.
//
// PyTorch reads ATEN_CPU_CAPABILITY once, when its first kernel dispatches, so one process runs
// one capability: bnorm-bench runs this baseline in a child process per capability
// (--torch-capabilities, main.cpp) and names each column after the capability that PyTorch
// reports it used ("PyTorch AVX2", "PyTorch AVX512").
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

#include "bench.hpp"

namespace bnorm::bench {
namespace {

// "key" from at::show_config()'s text: a line "  - <key>: value" or a "KEY=value," setting.
std::string config_value(const std::string& key) {
  const std::string config = at::show_config();
  std::istringstream lines(config);
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find(key + ": ");
    if (at != std::string::npos) return line.substr(at + key.size() + 2);
  }
  const auto at = config.find(key + "=");
  if (at == std::string::npos) return "unknown";
  const auto begin = at + key.size() + 1;
  return config.substr(begin, config.find(',', begin) - begin);
}

// What PyTorch dispatches to in this process: "AVX2", "AVX512", "NO AVX".
std::string capability() {
  static const std::string name = config_value("CPU capability usage");
  return name;
}

std::string describe_libtorch() {
  const char* env = std::getenv("ATEN_CPU_CAPABILITY");
  return fmt::format(
      "libtorch {} (ATen's batch-norm kernels, at::native_batch_norm*), CPU capability {} "
      "(ATEN_CPU_CAPABILITY={}); BLAS built against: {}, loaded: {} (batch norm calls no BLAS)",
      config_value("TORCH_VERSION"), capability(), env != nullptr ? env : "unset",
      config_value("BLAS_INFO"), loaded_library("libblas"));
}

at::Tensor wrap(const Problem& p, const Tensor& data) {
  auto* ptr = const_cast<float*>(data.data());
  const auto options = at::TensorOptions().dtype(at::kFloat);
  switch (p.layout) {
    case Layout::kNc:
      return at::from_blob(ptr, {p.n, p.c}, options);
    case Layout::kNhwc:
      return at::from_blob(ptr, {p.n, p.c, p.h, p.w}, {p.h * p.w * p.c, 1, p.w * p.c, p.c},
                           options);
    case Layout::kNchw:
      break;
  }
  return at::from_blob(ptr, {p.n, p.c, p.h, p.w}, options);
}

// t's values in the problem's memory layout.
std::vector<float> unwrap(const Problem& p, const at::Tensor& t) {
  const at::Tensor c = p.layout == Layout::kNhwc && t.dim() == 4
                           ? t.contiguous(at::MemoryFormat::ChannelsLast)
                           : t.contiguous();
  std::vector<float> v(static_cast<std::size_t>(c.numel()));
  std::memcpy(v.data(), c.data_ptr<float>(), v.size() * sizeof(float));
  return v;
}

class TorchRunner final : public Runner {
 public:
  TorchRunner(const Problem& p, Op op, const Inputs& in) : p_(p), op_(op), eps_(in.epsilon) {
    x_ = wrap(p, in.x);
    dy_ = wrap(p, in.dy);
    const auto options = at::TensorOptions().dtype(at::kFloat);
    gamma_ = at::from_blob(const_cast<float*>(in.gamma.data()), {p.c}, options).clone();
    beta_ = at::from_blob(const_cast<float*>(in.beta.data()), {p.c}, options).clone();
    mean_ = at::from_blob(const_cast<float*>(in.mean.data()), {p.c}, options).clone();
    variance_ = at::from_blob(const_cast<float*>(in.variance.data()), {p.c}, options).clone();
    running_mean_ = mean_.clone();
    running_var_ = variance_.clone();
    invstd_ = (variance_ + static_cast<double>(eps_)).rsqrt();
  }
  void run() override {
    switch (op_) {
      case Op::kForwardTraining:
        result_ =
            at::native_batch_norm(x_, gamma_, beta_, running_mean_, running_var_, true, 0.1, eps_);
        break;
      case Op::kInference:
        result_ = at::native_batch_norm(x_, gamma_, beta_, mean_, variance_, false, 0.1, eps_);
        break;
      case Op::kBackward:
        result_ = at::native_batch_norm_backward(dy_, x_, gamma_, running_mean_, running_var_,
                                                 mean_, invstd_, true, eps_, {true, true, true});
        break;
    }
  }
  Outputs outputs() const override {
    Outputs o;
    o.y = unwrap(p_, std::get<0>(result_));
    if (op_ == Op::kBackward) {
      o.dgamma = unwrap(p_, std::get<1>(result_));
      o.dbeta = unwrap(p_, std::get<2>(result_));
    }
    return o;
  }

 private:
  Problem p_;
  Op op_;
  float eps_;
  at::Tensor x_, dy_, gamma_, beta_, mean_, variance_, running_mean_, running_var_, invstd_;
  std::tuple<at::Tensor, at::Tensor, at::Tensor> result_;
};

}  // namespace

Implementation libtorch_implementation() {
  Implementation impl;
  impl.name = "PyTorch " + capability();
  impl.make = [](const Problem& p, Op op, const Inputs& in) -> std::unique_ptr<Runner> {
    return std::make_unique<TorchRunner>(p, op, in);
  };
  impl.set_threads = [](int threads) { at::set_num_threads(threads); };
  impl.describe = describe_libtorch;
  return impl;
}

}  // namespace bnorm::bench
