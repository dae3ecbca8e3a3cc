// Console table, JSON and markdown (with a gnuplot PNG) from the medians of one run.
#include "report.hpp"

#include <fmt/format.h>
#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "bnorm/kernels.hpp"

namespace bnorm::bench {
namespace {

// Writes `text` to path atomically: a temporary file in the same directory, fsync, rename.
void write_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) throw std::runtime_error(fmt::format("cannot write '{}'", tmp));
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size() &&
                  std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  std::fclose(f);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error(fmt::format("cannot write '{}'", path));
  }
}

double gbps(const Row& row, double seconds) {
  return static_cast<double>(traffic_bytes(row.problem, row.op)) / seconds * 1e-9;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

std::string fmt_time(double s) {
  if (std::isnan(s)) return "-";
  const double us = s * 1e6;
  return us < 100 ? fmt::format("{:.2f}", us) : fmt::format("{:.0f}", us);
}

std::string fmt_bytes(std::int64_t b) {
  if (b >= (std::int64_t{1} << 20))
    return fmt::format("{:.1f} MiB", static_cast<double>(b) / (1 << 20));
  return fmt::format("{:.1f} KiB", static_cast<double>(b) / 1024);
}

struct Metrics {
  double us, gbps, pct_copy, vs_peer;
};

Metrics bnorm_metrics(const Report& r, const Row& row) {
  const double s = row.seconds[0];
  const double g = gbps(row, s);
  return {s * 1e6, g, 100 * g / r.copy_gbps(row.problem.bytes(), row.threads),
          r.best_peer_seconds(row) / s};
}

std::string layout_of(const Problem& p) {
  return p.layout == Layout::kNchw ? "NCHW" : (p.layout == Layout::kNhwc ? "NHWC" : "NC");
}

std::string dims_of(const Problem& p) {
  if (p.layout == Layout::kNc) return fmt::format("{}×{}", p.n, p.c);
  return fmt::format("{}×{}×{}×{}", p.n, p.c, p.h, p.w);
}

}  // namespace

double Report::copy_gbps(std::int64_t bytes, int threads) const {
  for (const auto& p : probes) {
    if (p.bytes == bytes && p.threads == threads) return p.copy_gbps;
  }
  return NAN;
}

double Report::dram_copy_gbps(int threads) const {
  double best = NAN;
  std::int64_t largest = 0;
  for (const auto& p : probes) {
    if (p.threads == threads && p.bytes > largest) largest = p.bytes, best = p.copy_gbps;
  }
  return best;
}

double Report::best_peer_seconds(const Row& row) const {
  double best = NAN;
  for (std::size_t i = 0; i < implementations.size(); ++i) {
    if (implementations[i].rfind("bnorm", 0) == 0 || std::isnan(row.seconds[i])) continue;
    if (std::isnan(best) || row.seconds[i] < best) best = row.seconds[i];
  }
  return best;
}

void print_console(const Report& r) {
  std::string header = fmt::format("{:<10} {:<24} {:>3}", "op", "shape", "thr");
  for (const auto& name : r.implementations) header += fmt::format(" {:>10} us", name);
  header += fmt::format(" {:>9} {:>7} {:>8}", "GB/s", "%copy", "vs peer");
  fmt::print("\n{}\n", header);
  for (const Row& row : r.rows) {
    std::string line =
        fmt::format("{:<10} {:<24} {:>3}", op_name(row.op), row.problem.shape(), row.threads);
    for (const double s : row.seconds) line += fmt::format(" {:>10}", fmt_time(s));
    const Metrics m = bnorm_metrics(r, row);
    line += fmt::format(" {:>9.1f} {:>6.0f}% {:>7.2f}x", m.gbps, m.pct_copy, m.vs_peer);
    fmt::print("{}\n", line);
  }
  fmt::print("\ncopy bandwidth (GB/s): ");
  for (const auto& p : r.probes) {
    if (p.bytes == (std::int64_t{512} << 20))
      fmt::print("DRAM {} thr {:.1f}  ", p.threads, p.copy_gbps);
  }
  fmt::print("\n");
}

void write_json(const Report& r, const std::string& path) {
  nlohmann::json j;
  j["command"] = r.command;
  j["cpu"] = cpu_model();
  j["highway_target"] = simd_target_name();
  for (const auto& [name, configuration] : r.configurations) {
    j["configurations"][name] = configuration;
  }
  j["traffic_model"] =
      "forward training: 3 x bytes(x); inference: 2 x bytes(x); backward: 5 x bytes(x)";
  for (const auto& p : r.probes) {
    j["probes"].push_back({{"bytes", p.bytes},
                           {"threads", p.threads},
                           {"copy_gbps", p.copy_gbps},
                           {"read_gbps", p.read_gbps}});
  }
  for (const Row& row : r.rows) {
    const Problem& p = row.problem;
    const double peer = r.best_peer_seconds(row);
    for (std::size_t i = 0; i < r.implementations.size(); ++i) {
      const double s = row.seconds[i];
      if (std::isnan(s)) continue;
      const double g = gbps(row, s);
      nlohmann::json e = {{"problem", p.name},
                          {"shape", p.shape()},
                          {"op", op_name(row.op)},
                          {"threads", row.threads},
                          {"implementation", r.implementations[i]},
                          {"bytes", p.bytes()},
                          {"time_us", s * 1e6},
                          {"gbps", g},
                          {"pct_copy", 100 * g / r.copy_gbps(p.bytes(), row.threads)}};
      if (i == 0) {
        const Geometry g0 = p.layout == Layout::kNchw ? Geometry{p.n, p.c, p.h * p.w}
                                                      : Geometry{p.n * p.h * p.w, p.c, 1};
        e["kernel"] = kernel_for(g0, false);
        if (!std::isnan(peer)) e["vs_best_peer"] = peer / s;
      }
      j["results"].push_back(e);
    }
  }
  write_atomic(path, j.dump(1) + "\n");
}

void write_markdown(const Report& r, const std::string& path, const std::string& png) {
  std::string md;
  md += "# Benchmarks\n\n";
  md += "Generated by `bnorm-bench` (`scripts/bench`); do not edit by hand: rerun to refresh.\n\n";
  md += fmt::format("- Machine: {}, {} hardware threads; bnorm's Highway target: {}.\n",
                    cpu_model(), omp_get_num_procs(), simd_target_name());
  md += fmt::format("- Command: `{}`\n", r.command);
  md +=
      "- float32; each time is the median of repetitions (Google Benchmark, real time). Peers "
      "run in their best configuration: oneDNN at the best ISA it finds (no "
      "ONEDNN_MAX_CPU_ISA), PyTorch at each CPU capability worth trying (its own choice and, "
      "where the CPU has AVX-512, ATEN_CPU_CAPABILITY=avx512, which PyTorch 1.13 does not pick "
      "by itself), each in its own process since PyTorch reads the capability once; the best "
      "peer of a row is the fastest of all peer columns.\n";
  md +=
      "- Every implementation gets the same 64-byte aligned tensors, as frameworks allocate "
      "them. The process keeps freed memory in its heap (mallopt): PyTorch allocates its outputs "
      "on every call and would otherwise pay this VM's page faults (~13 µs per 4 KiB page, 9x "
      "its own time), which a long-running PyTorch process does not.\n";
  md +=
      "- Traffic model (GB/s column): forward training reads x twice and writes y (3 × bytes(x)); "
      "inference reads x once and writes y (2×); backward reads x and dy twice and writes dx (5×). "
      "bnorm's fused channels-first passes read x (and dy) from memory only once, so they can "
      "exceed "
      "100% of copy bandwidth under this model.\n";
  md +=
      "- % copy: bnorm's GB/s over the copy bandwidth measured at the tensor's size (bytes(x)) "
      "with "
      "the same thread count; vs peer: best peer's time / bnorm's time (> 1: bnorm faster).\n";
  md += "\nConfigurations, as each implementation reported it in this run:\n\n";
  for (const auto& [name, configuration] : r.configurations) {
    md += fmt::format("- **{}**: {}\n", name, configuration);
  }
  md += "\n";
  md += "| op | shape | layout | thr |";
  for (const auto& name : r.implementations) md += fmt::format(" {} µs |", name);
  md += " bnorm GB/s | % copy | vs best peer |\n|---|---|---|---:|";
  for (std::size_t i = 0; i < r.implementations.size(); ++i) md += "---:|";
  md += "---:|---:|---:|\n";
  for (const Row& row : r.rows) {
    md += fmt::format("| {} | {} | {} | {} |", op_name(row.op), dims_of(row.problem),
                      layout_of(row.problem), row.threads);
    for (const double s : row.seconds) md += fmt::format(" {} |", fmt_time(s));
    const Metrics m = bnorm_metrics(r, row);
    md += fmt::format(" {:.1f} | {:.0f}% | {:.2f} |\n", m.gbps, m.pct_copy, m.vs_peer);
  }
  // Targets of issue 3, evaluated on this run.
  int rows = 0, faster = 0, big = 0, big_ok = 0, nchw = 0, nchw_ok = 0;
  std::string misses;
  for (const Row& row : r.rows) {
    const Metrics m = bnorm_metrics(r, row);
    if (std::isnan(m.vs_peer)) continue;
    ++rows;
    faster += m.vs_peer >= 1.0;
    if (row.problem.bytes() >= (std::int64_t{1} << 20)) {
      ++big;
      big_ok += m.pct_copy >= 80;
    }
    if (row.problem.layout == Layout::kNchw && row.op != Op::kInference) {
      ++nchw;
      nchw_ok += m.vs_peer >= 3.0;
    }
  }
  md += "\n## Targets\n\n";
  md += fmt::format("- bnorm at least as fast as the best peer: {} of {} rows.\n", faster, rows);
  md += fmt::format(
      "- NCHW forward training and backward at least 3× the best peer: {} of {} rows.\n", nchw_ok,
      nchw);
  md += fmt::format("- Tensors of 1 MiB and more at ≥ 80% of copy bandwidth: {} of {} rows.\n",
                    big_ok, big);
  md +=
      "\n## Bandwidth probe\n\n| bytes | threads | copy GB/s | read GB/s "
      "|\n|---:|---:|---:|---:|\n";
  for (const auto& p : r.probes) {
    md += fmt::format("| {} | {} | {:.1f} | {:.1f} |\n", fmt_bytes(p.bytes), p.threads, p.copy_gbps,
                      p.read_gbps);
  }
  if (!png.empty()) {
    // One clustered histogram per op: GB/s per shape and implementation, at the most threads.
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / fmt::format("bnorm-bench-{}", ::getpid());
    std::filesystem::create_directories(dir);
    // One thread: the figure least disturbed by other load on a shared machine.
    int threads = r.rows.empty() ? 1 : r.rows.front().threads;
    for (const Row& row : r.rows) threads = std::min(threads, row.threads);
    std::string script = fmt::format(
        "set terminal pngcairo size 1600,1500 font ',9'\nset output '{}'\nset multiplot layout "
        "3,1\n"
        "set style data histogram\nset style histogram clustered gap 1\nset style fill solid 0.8 "
        "border -1\n"
        "set ylabel 'GB/s (traffic model, log scale)'\nset logscale y\nset yrange [0.1:*]\n"
        "set xtics rotate by 40 right noenhance\nset grid ytics\nset key top left\n",
        png);
    for (const Op op : {Op::kForwardTraining, Op::kInference, Op::kBackward}) {
      const std::string data = (dir / fmt::format("{}.dat", op_name(op))).string();
      std::string rows_text = "shape";
      for (const auto& name : r.implementations) rows_text += fmt::format(" \"{}\"", name);
      rows_text += " \"copy at size\"\n";
      int n = 0;
      for (const Row& row : r.rows) {
        if (row.op != op || row.threads != threads) continue;
        rows_text += fmt::format("\"{}\"", row.problem.shape());
        for (const double s : row.seconds)
          rows_text += fmt::format(" {:.3f}", std::isnan(s) ? 0.0 : gbps(row, s));
        rows_text += fmt::format(" {:.3f}\n", r.copy_gbps(row.problem.bytes(), row.threads));
        ++n;
      }
      if (n == 0) continue;
      std::ofstream(data) << rows_text;
      script += fmt::format("set title '{} ({} thread{})'\nplot", op_name(op), threads,
                            threads > 1 ? "s" : "");
      for (std::size_t i = 0; i < r.implementations.size(); ++i) {
        script +=
            fmt::format("{} '{}' using {}:xtic(1) title columnhead", i ? "," : "", data, i + 2);
      }
      script += fmt::format(", '' using {} title columnhead lc rgb 'gray'\n",
                            r.implementations.size() + 2);
    }
    script += "unset multiplot\n";
    const std::string gp = (dir / "plot.gp").string();
    std::ofstream(gp) << script;
    if (std::system(fmt::format("gnuplot '{}'", gp).c_str()) == 0) {
      md += fmt::format("\n## Plot\n\n![GB/s per shape and implementation]({})\n",
                        std::filesystem::path(png).filename().string());
    } else {
      fmt::print(stderr, "bnorm-bench: gnuplot failed; no plot\n");
    }
    std::filesystem::remove_all(dir);
  }
  write_atomic(path, md);
}

}  // namespace bnorm::bench
