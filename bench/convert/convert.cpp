// Throughput of the 16-bit conversions in cache: every path (the highway one on each Highway
// target this CPU runs, and the native ones) and direction, on 4,096 values (L1: 16 KiB of
// float + 8 KiB of 16-bit) and 65,536 values (L2), one thread. Reports ns per element.
//   build/release/bench/convert/bnorm-bench-convert [--benchmark_min_time=0.2]
#include <benchmark/benchmark.h>

#include <bit>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "bnorm/half.hpp"
#include "kernels/simd/convert.hpp"
#include "kernels/simd/simd.hpp"

namespace {

using bnorm::bf16;
using bnorm::fp16;
using bnorm::kernels::simd::ConvertPath;

// Normal data of one sign and several binades, as activations are.
std::vector<float> data(std::size_t n) {
  std::mt19937 rng(15);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

template <class T16>
void narrow(benchmark::State& state, void (*f)(const float*, T16*, std::size_t),
            std::int64_t target) {
  bnorm::kernels::simd::force_target(target);
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::vector<float> in = data(n);
  std::vector<T16> out(n);
  for (auto _ : state) {
    f(in.data(), out.data(), n);
    benchmark::ClobberMemory();
  }
  state.counters["ns_per_element"] =
      benchmark::Counter(static_cast<double>(state.iterations() * n),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  bnorm::kernels::simd::force_target(0);
}

template <class T16>
void widen(benchmark::State& state, void (*f)(const T16*, float*, std::size_t),
           std::int64_t target) {
  bnorm::kernels::simd::force_target(target);
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::vector<float> x = data(n);
  std::vector<T16> in(n);
  for (std::size_t i = 0; i < n; ++i) in[i] = T16(x[i]);
  std::vector<float> out(n);
  for (auto _ : state) {
    f(in.data(), out.data(), n);
    benchmark::ClobberMemory();
  }
  state.counters["ns_per_element"] =
      benchmark::Counter(static_cast<double>(state.iterations() * n),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  bnorm::kernels::simd::force_target(0);
}

void register_path(const ConvertPath& p, const std::string& label, std::int64_t target) {
  const auto add = [](benchmark::internal::Benchmark* b) { b->Arg(4096)->Arg(65536); };
  if (p.narrow_bf16 != nullptr) {
    add(benchmark::RegisterBenchmark(("narrow_bf16/" + label).c_str(), narrow<bf16>, p.narrow_bf16,
                                     target));
  }
  if (p.narrow_fp16 != nullptr) {
    add(benchmark::RegisterBenchmark(("narrow_fp16/" + label).c_str(), narrow<fp16>, p.narrow_fp16,
                                     target));
  }
  if (p.widen_bf16 != nullptr) {
    add(benchmark::RegisterBenchmark(("widen_bf16/" + label).c_str(), widen<bf16>, p.widen_bf16,
                                     target));
  }
  if (p.widen_fp16 != nullptr) {
    add(benchmark::RegisterBenchmark(("widen_fp16/" + label).c_str(), widen<fp16>, p.widen_fp16,
                                     target));
  }
}

// The plain float copy of the same bytes, for scale.
void copy_floats(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::vector<float> in = data(n);
  std::vector<float> out(n);
  for (auto _ : state) {
    std::copy(in.begin(), in.end(), out.begin());
    benchmark::ClobberMemory();
  }
  state.counters["ns_per_element"] =
      benchmark::Counter(static_cast<double>(state.iterations() * n),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

}  // namespace

int main(int argc, char** argv) {
  for (const auto& t : bnorm::kernels::simd::supported_targets()) {
    register_path(bnorm::kernels::simd::highway_convert(), "highway:" + t.name, t.bits);
  }
  const auto paths = bnorm::kernels::simd::convert_paths();
  for (std::size_t i = 1; i < paths.size(); ++i) register_path(paths[i], paths[i].name, 0);
  benchmark::RegisterBenchmark("copy_f32", copy_floats)->Arg(4096)->Arg(65536);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
