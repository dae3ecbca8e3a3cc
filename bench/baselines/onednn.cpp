// oneDNN (libdnnl-dev, v2.x API) as a benchmark baseline: batch_normalization_forward (training
// and inference with use_global_stats) and batch_normalization_backward, with scale and shift,
// on the problem's own layout (tag nchw, nhwc or nc). The primitive is created once per runner;
// run() only executes it. Threads: oneDNN's OpenMP runtime, set with omp_set_num_threads.
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>

#include "bench.hpp"

namespace bnorm::bench {
namespace {

using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

class OnednnRunner final : public Runner {
 public:
  OnednnRunner(const Problem& p, Op op, const Inputs& in)
      : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_), op_(op) {
    dnnl::memory::dims dims = {p.n, p.c, p.h, p.w};
    tag layout = p.layout == Layout::kNhwc ? tag::nhwc : tag::nchw;
    if (p.layout == Layout::kNc) {
      dims = {p.n, p.c};
      layout = tag::nc;
    }
    const dnnl::memory::desc data(dims, dt::f32, layout);
    const dnnl::memory::desc channel({p.c}, dt::f32, tag::x);
    auto* x = const_cast<float*>(in.x.data());
    auto* dy = const_cast<float*>(in.dy.data());
    const auto C = static_cast<std::size_t>(p.c);
    y_.assign(in.x.size(), 0.0f);
    mean_ = in.mean;
    variance_ = in.variance;
    gamma_ = in.gamma;
    beta_ = in.beta;
    dgamma_.assign(C, 0.0f);
    dbeta_.assign(C, 0.0f);
    const auto scale_shift =
        dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    const dnnl::batch_normalization_forward::desc forward_training(
        dnnl::prop_kind::forward_training, data, in.epsilon, scale_shift);
    const dnnl::batch_normalization_forward::primitive_desc forward_pd(forward_training, engine_);
    args_ = {{DNNL_ARG_SRC, dnnl::memory(data, engine_, x)},
             {DNNL_ARG_SCALE, dnnl::memory(channel, engine_, gamma_.data())},
             {DNNL_ARG_MEAN, dnnl::memory(channel, engine_, mean_.data())},
             {DNNL_ARG_VARIANCE, dnnl::memory(channel, engine_, variance_.data())}};
    switch (op) {
      case Op::kForwardTraining:
        primitive_ = dnnl::batch_normalization_forward(forward_pd);
        args_[DNNL_ARG_SHIFT] = dnnl::memory(channel, engine_, beta_.data());
        args_[DNNL_ARG_DST] = dnnl::memory(data, engine_, y_.data());
        break;
      case Op::kInference: {
        const dnnl::batch_normalization_forward::desc d(
            dnnl::prop_kind::forward_inference, data, in.epsilon,
            scale_shift | dnnl::normalization_flags::use_global_stats);
        primitive_ = dnnl::batch_normalization_forward(
            dnnl::batch_normalization_forward::primitive_desc(d, engine_));
        args_[DNNL_ARG_SHIFT] = dnnl::memory(channel, engine_, beta_.data());
        args_[DNNL_ARG_DST] = dnnl::memory(data, engine_, y_.data());
        break;
      }
      case Op::kBackward: {
        const dnnl::batch_normalization_backward::desc d(dnnl::prop_kind::backward, data, data,
                                                         in.epsilon, scale_shift);
        primitive_ = dnnl::batch_normalization_backward(
            dnnl::batch_normalization_backward::primitive_desc(d, engine_, forward_pd));
        // oneDNN 2.6 validates SHIFT as an input of the backward too when use_shift is set.
        args_[DNNL_ARG_SHIFT] = dnnl::memory(channel, engine_, beta_.data());
        args_[DNNL_ARG_DIFF_DST] = dnnl::memory(data, engine_, dy);
        args_[DNNL_ARG_DIFF_SRC] = dnnl::memory(data, engine_, y_.data());
        args_[DNNL_ARG_DIFF_SCALE] = dnnl::memory(channel, engine_, dgamma_.data());
        args_[DNNL_ARG_DIFF_SHIFT] = dnnl::memory(channel, engine_, dbeta_.data());
        break;
      }
    }
  }
  void run() override {
    primitive_.execute(stream_, args_);
    stream_.wait();
  }
  Outputs outputs() const override {
    Outputs o;
    o.y.assign(y_.begin(), y_.end());
    if (op_ == Op::kBackward) {
      o.dgamma = dgamma_;
      o.dbeta = dbeta_;
    }
    if (op_ == Op::kForwardTraining) {
      o.mean = mean_;
      o.variance = variance_;
    }
    return o;
  }

 private:
  dnnl::engine engine_;
  dnnl::stream stream_;
  Op op_;
  dnnl::primitive primitive_;
  std::unordered_map<int, dnnl::memory> args_;
  Tensor y_;
  std::vector<float> mean_, variance_, gamma_, beta_, dgamma_, dbeta_;
};

}  // namespace

Implementation onednn_implementation() {
  Implementation impl;
  impl.name = "oneDNN";
  impl.make = [](const Problem& p, Op op, const Inputs& in) -> std::unique_ptr<Runner> {
    return std::make_unique<OnednnRunner>(p, op, in);
  };
  impl.set_threads = [](int threads) { omp_set_num_threads(threads); };
  return impl;
}

}  // namespace bnorm::bench
