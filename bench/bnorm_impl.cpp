// bnorm as a benchmark implementation: the functional API on the problem's own layout
// (NCHW -> {N, C, H*W}, NHWC and NC -> {N*H*W, C, 1}), with the automatic kernel or a forced one.
#include <omp.h>

#include <stdexcept>

#include "bench.hpp"
#include "bnorm/functional.hpp"
#include "bnorm/kernels.hpp"

namespace bnorm::bench {
namespace {

Geometry geometry_for(const Problem& p) {
  if (p.layout == Layout::kNchw) return Geometry{p.n, p.c, p.h * p.w};
  return Geometry{p.n * p.h * p.w, p.c, 1};
}

class BnormRunner final : public Runner {
 public:
  BnormRunner(const Problem& p, Op op, const Inputs& in, std::string kernel)
      : in_(in), g_(geometry_for(p)), op_(op), kernel_(std::move(kernel)) {
    y_.assign(in.x.size(), 0.0f);
    out_.mean.assign(in.gamma.size(), 0.0f);
    out_.variance.assign(in.gamma.size(), 0.0f);
    out_.dgamma.assign(in.gamma.size(), 0.0f);
    out_.dbeta.assign(in.gamma.size(), 0.0f);
  }
  void run() override {
    if (kernel_.empty()) {
      call();
    } else {
      const ScopedKernel forced(kernel_);  // takes a lock: only for --check and comparisons
      call();
    }
  }
  void call() {
    switch (op_) {
      case Op::kForwardTraining:
        forward_training(in_.x, y_, g_, in_.gamma, in_.beta, in_.epsilon, out_.mean, out_.variance);
        break;
      case Op::kInference:
        forward_inference(in_.x, y_, g_, in_.gamma, in_.beta, in_.mean, in_.variance, in_.epsilon);
        break;
      case Op::kBackward:
        backward(in_.x, in_.dy, g_, in_.gamma, in_.mean, in_.variance, in_.epsilon, y_, out_.dgamma,
                 out_.dbeta);
        break;
    }
  }
  Outputs outputs() const override {
    Outputs o = out_;
    o.y.assign(y_.begin(), y_.end());
    if (op_ != Op::kBackward) o.dgamma.clear(), o.dbeta.clear();
    if (op_ != Op::kForwardTraining) o.mean.clear(), o.variance.clear();
    return o;
  }

 private:
  const Inputs& in_;
  Geometry g_;
  Op op_;
  std::string kernel_;
  Tensor y_;  // y, or dx
  Outputs out_;
};

void set_omp_threads(int threads) {
  omp_set_num_threads(threads);
}

std::string describe_bnorm() {
  return "bnorm's SIMD kernels (Highway target " + simd_target_name() +
         ", runtime dispatch), OpenMP threads";
}

}  // namespace

Implementation bnorm_implementation(const std::string& kernel) {
  Implementation impl;
  impl.name = kernel.empty() ? "bnorm" : "bnorm[" + kernel + "]";
  impl.set_threads = set_omp_threads;
  impl.describe = describe_bnorm;
  if (kernel.empty()) {
    impl.make = [](const Problem& p, Op op, const Inputs& in) -> std::unique_ptr<Runner> {
      return std::make_unique<BnormRunner>(p, op, in, "");
    };
  } else if (kernel == "reference") {
    impl.make = [](const Problem& p, Op op, const Inputs& in) -> std::unique_ptr<Runner> {
      return std::make_unique<BnormRunner>(p, op, in, "reference");
    };
  } else {
    // The test-only plain twins are not linked into the bench: the shipped registry only.
    throw std::invalid_argument("bnorm_implementation: kernel '" + kernel +
                                "'; expected \"\" (automatic) or \"reference\"");
  }
  return impl;
}

}  // namespace bnorm::bench
