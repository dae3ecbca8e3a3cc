// Problem lists (tests/problems/*.txt) and the inputs generated for each problem.
#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "bench.hpp"

namespace bnorm::bench {

std::string Problem::shape() const {
  switch (layout) {
    case Layout::kNc:
      return fmt::format("{}x{} NC", n, c);
    case Layout::kNhwc:
      return fmt::format("{}x{}x{}x{} NHWC", n, h, w, c);
    case Layout::kNchw:
      break;
  }
  return fmt::format("{}x{}x{}x{} NCHW", n, c, h, w);
}

const char* op_name(Op op) {
  switch (op) {
    case Op::kForwardTraining:
      return "forward";
    case Op::kInference:
      return "inference";
    case Op::kBackward:
      return "backward";
  }
  return "?";
}

std::int64_t traffic_bytes(const Problem& p, Op op) {
  switch (op) {
    case Op::kForwardTraining:
      return 3 * p.bytes();
    case Op::kInference:
      return 2 * p.bytes();
    case Op::kBackward:
      return 5 * p.bytes();
  }
  return 0;
}

// Format: `name N C H W [layout]`, layout nchw (default), nhwc or nc (then H = W = 1); `#` starts
// a comment; blank lines are ignored.
std::vector<Problem> read_problems(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("problem list '{}': cannot open", path));
  std::vector<Problem> problems;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (const auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    std::istringstream fields(line);
    Problem p;
    if (!(fields >> p.name)) continue;
    p.source = fmt::format("{}:{}", path, number);
    if (!(fields >> p.n >> p.c >> p.h >> p.w) || p.n < 1 || p.c < 1 || p.h < 1 || p.w < 1) {
      throw std::runtime_error(
          fmt::format("{}: '{}': expected `name N C H W [nchw|nhwc|nc]` with "
                      "positive sizes",
                      p.source, line));
    }
    std::string layout = "nchw";
    fields >> layout;
    std::string extra;
    if (fields >> extra) {
      throw std::runtime_error(
          fmt::format("{}: unexpected '{}' after the layout", p.source, extra));
    }
    if (layout == "nchw") {
      p.layout = Layout::kNchw;
    } else if (layout == "nhwc") {
      p.layout = Layout::kNhwc;
    } else if (layout == "nc" && p.h == 1 && p.w == 1) {
      p.layout = Layout::kNc;
    } else {
      throw std::runtime_error(fmt::format(
          "{}: layout '{}'; expected nchw, nhwc, or nc with H = W = 1", p.source, layout));
    }
    problems.push_back(p);
  }
  return problems;
}

namespace {
// A cheap deterministic generator (the big tensors hold 10^8 values): xorshift64*, mapped to
// roughly normal values by summing four uniforms.
struct Generator {
  std::uint64_t state;
  double uniform() {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return static_cast<double>((state * 0x2545F4914F6CDD1DULL) >> 11) * 0x1.0p-53;
  }
  float normal(double mean, double stddev) {
    const double s = uniform() + uniform() + uniform() + uniform() - 2.0;  // variance 1/3
    return static_cast<float>(mean + stddev * s * std::sqrt(3.0));
  }
};
}  // namespace

Inputs make_inputs(const Problem& p) {
  Inputs in;
  Generator gen{0x9E3779B97F4A7C15ULL ^ static_cast<std::uint64_t>(p.size())};
  const auto n = static_cast<std::size_t>(p.size());
  const auto C = static_cast<std::size_t>(p.c);
  in.x.resize(n);
  in.dy.resize(n);
  for (auto& v : in.x) v = gen.normal(0.5, 2.0);
  for (auto& v : in.dy) v = gen.normal(0.0, 1.0);
  in.gamma.resize(C);
  in.beta.resize(C);
  in.mean.resize(C);
  in.variance.resize(C);
  for (std::size_t c = 0; c < C; ++c) {
    in.gamma[c] = gen.normal(1.0, 0.2);
    in.beta[c] = gen.normal(0.0, 0.5);
    in.mean[c] = gen.normal(0.5, 0.1);
    in.variance[c] = gen.normal(4.0, 0.3);
  }
  return in;
}

}  // namespace bnorm::bench
