// bnorm-bench: bnorm, oneDNN and libtorch side by side in one process, plus a bandwidth probe,
// over problem lists (tests/problems/*.txt). Google Benchmark times each (problem, op, threads,
// implementation) as the median of repetitions; the summary is a console table, a JSON file and
// docs/benchmarks.md with a PNG plot.
//
//   bnorm-bench [--problems=a.txt,b.txt] [--threads=1,2] [--ops=forward,inference,backward]
//               [--filter=substring] [--check] [--min-time=s] [--repetitions=n]
//               [--json=path] [--md=path] [--png=path] [--torch-capabilities=auto,avx512]
//               [google benchmark flags]
//
// PyTorch picks its kernels' instruction set (ATEN_CPU_CAPABILITY) once per process, so the
// libtorch baseline runs in one child process of bnorm-bench per capability (this binary with
// --peer-child, peer_process.hpp), timed row by row beside bnorm and oneDNN; each becomes a
// column named after the capability PyTorch reports, and the best of them is the peer.
// "auto" is PyTorch's own choice (ATEN_CPU_CAPABILITY unset); the default list adds "avx512"
// where the CPU has AVX-512, since PyTorch 1.13 does not pick it by itself.
// --torch-capabilities= (empty) runs libtorch in this process, as the environment says.
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bandwidth.hpp"
#include "bench.hpp"
#include "bnorm/kernels.hpp"
#include "peer_process.hpp"
#include "report.hpp"

#ifndef BNORM_BENCH_PROBLEMS
#define BNORM_BENCH_PROBLEMS "tests/problems/bench.txt"
#endif

namespace bnorm::bench {
namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> parts;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

std::vector<std::string> default_torch_capabilities() {
  std::vector<std::string> caps = {"auto"};
#if defined(__x86_64__)
  // PyTorch 1.13's own test for its AVX512 kernels (aten/src/ATen/native/DispatchStub.cpp).
  if (__builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma")) {
    caps.emplace_back("avx512");
  }
#endif
  return caps;
}

struct Options {
  std::vector<std::string> problem_files = {BNORM_BENCH_PROBLEMS};
  std::vector<int> threads = {1, 2};
  std::vector<Op> ops = {Op::kForwardTraining, Op::kInference, Op::kBackward};
  std::string filter;
  bool check = false;
  double min_time = 0.05;
  int repetitions = 3;
  std::string json = "bench-results.json";
  std::string md;
  std::string png;
  std::string command;
  std::vector<std::string> torch_capabilities = default_torch_capabilities();
  bool peer_child = false;          // --peer-child: serve libtorch timings (peer_process.hpp)
  std::vector<std::string> passed;  // our flags that choose and time the problems, for children
};

// Takes our flags out of argv (the rest goes to Google Benchmark).
Options parse(int& argc, char** argv) {
  Options o;
  for (int i = 0; i < argc; ++i) o.command += std::string(i ? " " : "") + argv[i];
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto eq = a.find('=');
    const std::string key = a.substr(0, eq);
    const std::string v = eq == std::string::npos ? "" : a.substr(eq + 1);
    if (key == "--problems") {
      o.problem_files = split(v);
    } else if (key == "--threads") {
      o.threads.clear();
      for (const auto& t : split(v)) o.threads.push_back(std::stoi(t));
    } else if (key == "--ops") {
      o.ops.clear();
      for (const auto& op : split(v)) {
        if (op == "forward") {
          o.ops.push_back(Op::kForwardTraining);
        } else if (op == "inference") {
          o.ops.push_back(Op::kInference);
        } else if (op == "backward") {
          o.ops.push_back(Op::kBackward);
        } else {
          throw std::runtime_error(
              fmt::format("--ops: '{}'; expected forward, inference or backward", op));
        }
      }
    } else if (key == "--filter") {
      o.filter = v;
    } else if (a == "--check") {
      o.check = true;
    } else if (key == "--min-time") {
      o.min_time = std::stod(v);
    } else if (key == "--repetitions") {
      o.repetitions = std::stoi(v);
    } else if (key == "--json") {
      o.json = v;
    } else if (key == "--md") {
      o.md = v;
    } else if (key == "--png") {
      o.png = v;
    } else if (key == "--torch-capabilities") {
      o.torch_capabilities = split(v);
    } else if (a == "--peer-child") {
      o.peer_child = true;
    } else {
      argv[kept++] = argv[i];
      continue;
    }
    if (key == "--problems" || key == "--threads" || key == "--ops" || key == "--filter" ||
        a == "--check" || key == "--min-time" || key == "--repetitions") {
      o.passed.push_back(a);
    }
  }
  argc = kept;
  return o;
}

// The inputs of one problem at a time: the big tensors are 100 MB each, so problems are
// generated when their first benchmark runs and dropped when the next problem starts.
const Inputs& inputs_for(const Problem& p) {
  static std::string current;
  static std::unique_ptr<Inputs> inputs;
  if (!inputs || current != p.source) {
    inputs.reset();
    inputs = std::make_unique<Inputs>(make_inputs(p));
    current = p.source;
  }
  return *inputs;
}

// Largest |a - b| over max(1, max |b|): a relative error on the tensor's scale.
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double err = 0;
  double scale = 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return std::isnan(err) ? INFINITY : err / scale;
}

// --check: every implementation's output against bnorm's reference kernel, before any timing.
bool check_all(const std::vector<Problem>& problems, const Options& o,
               const std::vector<Implementation>& impls) {
  constexpr double kTensorTolerance = 1e-4;   // float kernels with float arithmetic
  constexpr double kChannelTolerance = 1e-3;  // dgamma/dbeta: float sums over up to 10^5 values
  bool ok = true;
  const Implementation reference = bnorm_implementation("reference");
  for (const Problem& p : problems) {
    const Inputs& in = inputs_for(p);
    for (const Op op : o.ops) {
      auto ref_runner = reference.make(p, op, in);
      ref_runner->run();
      const Outputs ref = ref_runner->outputs();
      for (const Implementation& impl : impls) {
        auto runner = impl.make(p, op, in);
        runner->run();
        const Outputs got = runner->outputs();
        double err = relative_error(got.y, ref.y);
        bool pass = err <= kTensorTolerance;
        if (!got.dgamma.empty()) {
          const double e = std::max(relative_error(got.dgamma, ref.dgamma),
                                    relative_error(got.dbeta, ref.dbeta));
          pass = pass && e <= kChannelTolerance;
          err = std::max(err, e);
        }
        if (!got.mean.empty()) {
          const double e = std::max(relative_error(got.mean, ref.mean),
                                    relative_error(got.variance, ref.variance));
          pass = pass && e <= kTensorTolerance;
          err = std::max(err, e);
        }
        const bool ours = impl.name.rfind("bnorm", 0) == 0;
        fmt::print("check {:<9} {:<24} {:<10} max relative error {:.2e} {}\n", op_name(op),
                   p.shape(), impl.name, err,
                   pass ? "ok" : (ours ? "FAILED" : "outside tolerance (peer; timed anyway)"));
        // A peer's accuracy is reported, not ours to fix: only bnorm failing stops the run.
        ok = ok && (pass || !ours);
      }
    }
  }
  return ok;
}

// Google Benchmark's console output, plus the medians kept for the summary.
class Collector : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      const bool single = r.run_type == Run::RT_Iteration && r.repetitions <= 1;
      if (median || single) seconds[r.run_name.function_name] = r.GetAdjustedRealTime() * 1e-6;
    }
  }
  std::map<std::string, double> seconds;  // by registered name; time unit is microseconds
};

std::string bench_name(const Problem& p, Op op, int threads, const std::string& impl) {
  return fmt::format("{}/{}/{}/threads:{}", op_name(op), p.name, impl, threads);
}
std::string probe_name(const char* kind, std::int64_t bytes, int threads) {
  return fmt::format("probe/{}/{}/threads:{}", kind, bytes, threads);
}

void configure(benchmark::internal::Benchmark* b, const Options& o) {
  b->Unit(benchmark::kMicrosecond)->UseRealTime()->MinTime(o.min_time);
  if (o.repetitions > 1) b->Repetitions(o.repetitions)->ReportAggregatesOnly(true);
}

// PyTorch allocates its outputs on every call. glibc serves large blocks with mmap and gives
// them back on free, so each call would first-touch fresh pages; in the sandboxed VMs we measure
// on a page fault costs ~13 us (12 MB of output: 40 ms), which would make PyTorch look 9x
// slower than it is. A real PyTorch process reuses memory (caching allocators, warm heaps), so
// the bench keeps freed memory in the heap: no mmap, no trimming. bnorm and oneDNN allocate
// nothing per call and are unaffected.
void keep_freed_memory() {
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
}

// The child processes of --torch-capabilities, one per capability, started in order.
std::vector<std::unique_ptr<PeerProcess>> start_torch_children(const Options& o) {
  std::vector<std::unique_ptr<PeerProcess>> children;
  for (const auto& capability : o.torch_capabilities) {
    std::vector<std::string> args = {"/proc/self/exe", "--peer-child"};
    args.insert(args.end(), o.passed.begin(), o.passed.end());
    fmt::print("PyTorch at ATEN_CPU_CAPABILITY={}: a child process\n", capability);
    children.push_back(std::make_unique<PeerProcess>(
        args, "ATEN_CPU_CAPABILITY",
        capability == "auto" ? "" : "ATEN_CPU_CAPABILITY=" + capability));
  }
  return children;
}

int main_impl(int argc, char** argv) {
  keep_freed_memory();
  Options o = parse(argc, argv);
  benchmark::Initialize(&argc, argv);
  std::vector<Problem> problems;
  for (const auto& file : o.problem_files) {
    for (auto& p : read_problems(file)) {
      if (o.filter.empty() || p.name.find(o.filter) != std::string::npos) problems.push_back(p);
    }
  }
  std::vector<Implementation> impls = implementations();
  std::vector<std::unique_ptr<PeerProcess>> children;  // columns timed in child processes
#if defined(BNORM_BENCH_WITH_TORCH)
  const auto is_torch = [](const Implementation& i) { return i.name.rfind("PyTorch", 0) == 0; };
  if (o.peer_child) {
    std::erase_if(impls, [&](const Implementation& i) { return !is_torch(i); });
    if (impls.empty()) throw std::runtime_error("--peer-child: no libtorch in this build");
    if (o.check && !check_all(problems, o, impls)) return 1;
    return serve_peer_requests(impls.front(), problems, inputs_for, o.min_time, o.repetitions);
  }
  const bool torch_in_children = !o.torch_capabilities.empty();
  if (torch_in_children) std::erase_if(impls, is_torch);
#endif
  if (o.check && !check_all(problems, o, impls)) {
    fmt::print(stderr, "bnorm-bench: --check failed\n");
    return 1;
  }
#if defined(BNORM_BENCH_WITH_TORCH)
  if (torch_in_children) children = start_torch_children(o);
#endif
  // Probes at each tensor size and at DRAM size, per thread count.
  std::vector<std::int64_t> sizes = {kDramProbeBytes};
  for (const Problem& p : problems) sizes.push_back(p.bytes());
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  for (const int threads : o.threads) {
    for (const std::int64_t bytes : sizes) {
      for (const char* kind : {"copy", "read"}) {
        const bool copy = kind[0] == 'c';
        auto* b = benchmark::RegisterBenchmark(probe_name(kind, bytes, threads).c_str(),
                                               [bytes, threads, copy](benchmark::State& state) {
                                                 omp_set_num_threads(threads);
                                                 Probe probe(bytes);
                                                 probe.copy();  // touch both buffers
                                                 for (auto _ : state) {
                                                   if (copy) {
                                                     probe.copy();
                                                   } else {
                                                     benchmark::DoNotOptimize(probe.read());
                                                   }
                                                   benchmark::ClobberMemory();
                                                 }
                                               });
        configure(b, o);
      }
    }
  }
  for (const Problem& p : problems) {
    for (const Op op : o.ops) {
      for (const int threads : o.threads) {
        for (const Implementation& impl : impls) {
          auto* b = benchmark::RegisterBenchmark(
              bench_name(p, op, threads, impl.name).c_str(),
              [p, op, threads, impl](benchmark::State& state) {
                impl.set_threads(threads);
                auto runner = impl.make(p, op, inputs_for(p));
                runner->run();  // warm up: first-touch of outputs, primitive caches
                for (auto _ : state) runner->run();
              });
          configure(b, o);
        }
        for (std::size_t c = 0; c < children.size(); ++c) {
          PeerProcess* child = children[c].get();
          const std::size_t index = static_cast<std::size_t>(&p - problems.data());
          // Timed by the child (median of its repetitions); reported as one manual-time run.
          benchmark::RegisterBenchmark(bench_name(p, op, threads, child->name()).c_str(),
                                       [child, index, op, threads](benchmark::State& state) {
                                         const double s = child->measure(index, op, threads);
                                         for (auto _ : state) {
                                           if (s < 0) {
                                             state.SkipWithError("not supported");
                                           } else {
                                             state.SetIterationTime(s);
                                           }
                                         }
                                       })
              ->Unit(benchmark::kMicrosecond)
              ->UseManualTime()
              ->Iterations(1);
        }
      }
    }
  }
  Collector collector;
  benchmark::RunSpecifiedBenchmarks(&collector);
  benchmark::Shutdown();

  // Summary.
  Report report;
  report.command = o.command;
  for (const auto& impl : impls) {
    report.implementations.push_back(impl.name);
    if (impl.describe != nullptr) report.configurations.emplace_back(impl.name, impl.describe());
  }
  for (const auto& child : children) {
    report.implementations.push_back(child->name());
    report.configurations.emplace_back(child->name(), child->configuration());
  }
  for (const int threads : o.threads) {
    for (const std::int64_t bytes : sizes) {
      const auto copy = collector.seconds.find(probe_name("copy", bytes, threads));
      const auto read = collector.seconds.find(probe_name("read", bytes, threads));
      if (copy == collector.seconds.end() || read == collector.seconds.end()) continue;
      report.probes.push_back({bytes, threads,
                               2.0 * static_cast<double>(bytes) / copy->second * 1e-9,
                               static_cast<double>(bytes) / read->second * 1e-9});
    }
  }
  for (const Problem& p : problems) {
    for (const Op op : o.ops) {
      for (const int threads : o.threads) {
        Row row{p, op, threads, {}};
        for (const auto& impl : report.implementations) {
          const auto it = collector.seconds.find(bench_name(p, op, threads, impl));
          row.seconds.push_back(it == collector.seconds.end() ? NAN : it->second);
        }
        report.rows.push_back(row);
      }
    }
  }
  print_console(report);
  if (!o.json.empty()) write_json(report, o.json);
  if (!o.md.empty()) write_markdown(report, o.md, o.png);
  return 0;
}

}  // namespace
}  // namespace bnorm::bench

int main(int argc, char** argv) {
  try {
    return bnorm::bench::main_impl(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bnorm-bench: {}\n", e.what());
    return 2;
  }
}
