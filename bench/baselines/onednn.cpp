// oneDNN (libdnnl-dev, v2.x API) as a benchmark baseline: batch_normalization_forward (training
// and inference with use_global_stats) and batch_normalization_backward, with scale and shift,
// on the problem's own layout (tag nchw, nhwc or nc). The primitive is created once per runner;
// run() only executes it. Threads: oneDNN's OpenMP runtime, set with omp_set_num_threads.
// oneDNN picks its best ISA at run time (ONEDNN_MAX_CPU_ISA unset); the report names the ISA and
// the implementation each primitive dispatched to (what ONEDNN_VERBOSE=1 would print).
#include <fmt/format.h>
#include <omp.h>

#include <cstdlib>
#include <map>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>

#include "bench.hpp"

namespace bnorm::bench {
namespace {

// Implementation names (impl_info_str, e.g. "bnorm_jit:avx512_core") of every primitive created,
// with how many primitives chose each.
std::map<std::string, int>& dispatched() {
  static std::map<std::string, int> seen;
  return seen;
}

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::all:
      return "all";
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_mic:
      return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops:
      return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
  }
  return "unknown";
}

std::string describe_onednn() {
  const dnnl_version_t* v = dnnl_version();
  const char* max_isa = std::getenv("ONEDNN_MAX_CPU_ISA");
  std::string impls;
  for (const auto& [name, count] : dispatched()) {
    impls += fmt::format("{}{} ({} primitives)", impls.empty() ? "" : ", ", name, count);
  }
  return fmt::format(
      "oneDNN {}.{}.{}, ONEDNN_MAX_CPU_ISA={}, effective ISA {}; implementations dispatched: {}",
      v->major, v->minor, v->patch, max_isa != nullptr ? max_isa : "unset (all)",
      isa_name(dnnl::get_effective_cpu_isa()), impls.empty() ? "none yet" : impls);
}

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
    const_dnnl_primitive_desc_t pd = nullptr;
    const char* info = nullptr;
    if (dnnl_primitive_get_primitive_desc(primitive_.get(), &pd) == dnnl_success &&
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info) == dnnl_success &&
        info != nullptr) {
      ++dispatched()[info];
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
  impl.describe = describe_onednn;
  return impl;
}

}  // namespace bnorm::bench
