// bnorm-bench: shared vocabulary. A Problem is one tensor shape and layout from a problem list;
// an Op is what is timed on it; an Implementation (bnorm, oneDNN, libtorch) makes a Runner for a
// (problem, op) that owns its buffers and runs one call per run().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bnorm/nn/tensor.hpp"

namespace bnorm::bench {

enum class Layout { kNchw, kNhwc, kNc };

struct Problem {
  std::string name;
  std::int64_t n = 0, c = 0, h = 1, w = 1;
  Layout layout = Layout::kNchw;
  std::string source;  // file:line, for messages

  [[nodiscard]] std::int64_t size() const { return n * c * h * w; }
  [[nodiscard]] std::int64_t bytes() const {
    return size() * static_cast<std::int64_t>(sizeof(float));
  }
  [[nodiscard]] std::string shape() const;  // "32x64x56x56 NCHW"
};

enum class Op { kForwardTraining, kInference, kBackward };
const char* op_name(Op op);  // "forward", "inference", "backward"

// Bytes moved under the stated traffic model: forward training reads x twice and writes y;
// inference reads x once and writes y; backward reads x and dy twice and writes dx.
std::int64_t traffic_bytes(const Problem& p, Op op);

// Tensors start on a cache line, as every framework allocates them (PyTorch and oneDNN align to
// 64 bytes): kernels that need aligned vectors (non-temporal stores) see what they see in use.
using Tensor = std::vector<float, nn::AlignedAllocator<float>>;

// Inputs shared by every implementation: logical NCHW order is irrelevant here, every buffer is
// in the problem's own memory layout (NCHW, NHWC or NC).
struct Inputs {
  Tensor x, dy;
  std::vector<float> gamma, beta, mean,
      variance;  // mean/variance: for inference and backward
  float epsilon = 1e-5f;
};
Inputs make_inputs(const Problem& p);

// What a run produces, for --check.
struct Outputs {
  std::vector<float> y;               // forward/inference: y; backward: dx
  std::vector<float> dgamma, dbeta;   // backward only
  std::vector<float> mean, variance;  // forward training only
};

class Runner {
 public:
  virtual ~Runner() = default;
  virtual void run() = 0;               // one call of the op
  virtual Outputs outputs() const = 0;  // after at least one run()
};

struct Implementation {
  std::string name;
  // nullptr when the implementation cannot run this (problem, op).
  std::unique_ptr<Runner> (*make)(const Problem& p, Op op, const Inputs& in);
  void (*set_threads)(int threads);
  // The configuration it runs in, for the report (library version, ISA, what it dispatched to).
  std::string (*describe)() = nullptr;
};

// The file a loaded shared library whose path contains `needle` resolves to (from
// /proc/self/maps, links followed: Debian's BLAS alternatives), or "none".
std::string loaded_library(const std::string& needle);

std::vector<Implementation> implementations();  // bnorm first, then the compiled-in baselines
Implementation bnorm_implementation(const std::string& kernel);  // "" = automatic, or "reference"
#if defined(BNORM_BENCH_WITH_DNNL)
Implementation onednn_implementation();
#endif
#if defined(BNORM_BENCH_WITH_TORCH)
Implementation libtorch_implementation();
#endif

// Problem lists: see tests/problems/bench.txt for the format.
std::vector<Problem> read_problems(const std::string& path);

}  // namespace bnorm::bench
