// Peers that run in child processes of bnorm-bench, timed at the same moment as bnorm's rows.
//
// PyTorch reads ATEN_CPU_CAPABILITY once per process, so each capability it is measured at needs
// its own process. A child is this binary started with --peer-child: it builds the same problem
// list, checks its implementation if asked, then answers requests ("time this problem, op and
// thread count") on its standard input with the median seconds per call on file descriptor 3.
// The parent registers one benchmark per request among its own, so every row's implementations
// are timed one after the other, as when all of them ran in one process: on a shared machine
// whose speed drifts from minute to minute, timing a peer's rows in a separate pass would not
// compare like with like.
#pragma once

#include <sys/types.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench.hpp"

namespace bnorm::bench {

class PeerProcess {
 public:
  // Starts `args` (args[0]: the executable) with the environment, less `unset`, plus `set`
  // ("NAME=value"; empty: nothing); returns once the child reported its name and configuration.
  PeerProcess(std::vector<std::string> args, const std::string& unset, const std::string& set);
  ~PeerProcess();
  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;

  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] const std::string& configuration() const { return configuration_; }

  // Median seconds per call of `op` on problems[problem] at `threads`, timed by the child.
  double measure(std::size_t problem, Op op, int threads);

 private:
  std::string read_line();

  pid_t pid_ = -1;
  std::FILE* requests_ = nullptr;
  std::FILE* replies_ = nullptr;
  std::string name_, configuration_;
};

// The child's side: reports impl's name and configuration, then answers requests until its
// standard input closes. Timing as Google Benchmark's with MinTime(min_time) and
// Repetitions(repetitions): one warm-up call, then per repetition enough calls to last min_time;
// the median over repetitions of the mean per call.
int serve_peer_requests(const Implementation& impl, const std::vector<Problem>& problems,
                        const Inputs& (*inputs_for)(const Problem&), double min_time,
                        int repetitions);

}  // namespace bnorm::bench
