// The summary of a bnorm-bench run: console table, JSON and docs/benchmarks.md with a PNG plot.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bench.hpp"

namespace bnorm::bench {

struct ProbeResult {
  std::int64_t bytes;
  int threads;
  double copy_gbps;  // 2 * bytes / time
  double read_gbps;  // bytes / time
};

struct Row {
  Problem problem;
  Op op;
  int threads;
  std::vector<double> seconds;  // per implementation (Report::implementations), NaN if absent
};

struct Report {
  std::string command;
  std::vector<std::string> implementations;  // [0] is bnorm
  // (implementation, the configuration it ran in: version, ISA or capability, dispatch)
  std::vector<std::pair<std::string, std::string>> configurations;
  std::vector<ProbeResult> probes;
  std::vector<Row> rows;

  // Copy bandwidth at `bytes` with `threads` (NaN if not probed).
  [[nodiscard]] double copy_gbps(std::int64_t bytes, int threads) const;
  [[nodiscard]] double dram_copy_gbps(int threads) const;
  // The fastest implementation other than bnorm's own (NaN if none ran).
  [[nodiscard]] double best_peer_seconds(const Row& row) const;
};

void print_console(const Report& report);
void write_json(const Report& report, const std::string& path);
// Writes the markdown page and, when png is not empty, the plot (gnuplot) it links to.
void write_markdown(const Report& report, const std::string& path, const std::string& png);

}  // namespace bnorm::bench
