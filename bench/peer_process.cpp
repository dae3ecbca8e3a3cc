// Peers in child processes: the parent's PeerProcess and the child's request loop.
#include "peer_process.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <utility>

extern char** environ;

namespace bnorm::bench {
namespace {

constexpr int kReplyFd = 3;

// fd moved above the descriptors a child is given (0 and kReplyFd), close-on-exec: dup2 onto
// its own number would keep the flag and the child would lose it.
int above_child_fds(int fd) {
  if (fd > kReplyFd) return fd;
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, kReplyFd + 1);
  ::close(fd);
  return moved;
}

// Seconds per call: `calls` calls of runner.run(), wall clock.
double time_calls(Runner& runner, std::int64_t calls) {
  const auto start = std::chrono::steady_clock::now();
  for (std::int64_t i = 0; i < calls; ++i) runner.run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median_seconds(Runner& runner, double min_time, int repetitions) {
  runner.run();  // warm up: first-touch of outputs, caches
  // Grow the call count until one batch lasts min_time (as Google Benchmark does).
  std::int64_t calls = 1;
  double elapsed = time_calls(runner, calls);
  while (elapsed < min_time) {
    const double factor = elapsed > 0 ? std::min(10.0, 1.4 * min_time / elapsed) : 10.0;
    calls = std::max(calls + 1, static_cast<std::int64_t>(static_cast<double>(calls) * factor));
    elapsed = time_calls(runner, calls);
  }
  std::vector<double> per_call = {elapsed / static_cast<double>(calls)};
  for (int r = 1; r < repetitions; ++r) {
    per_call.push_back(time_calls(runner, calls) / static_cast<double>(calls));
  }
  std::sort(per_call.begin(), per_call.end());
  const std::size_t n = per_call.size();
  return n % 2 == 1 ? per_call[n / 2] : (per_call[n / 2 - 1] + per_call[n / 2]) / 2;
}

// One line without its newline; "" only at end of file.
std::string get_line(std::FILE* f) {
  std::string line;
  for (int ch = std::fgetc(f); ch != EOF && ch != '\n'; ch = std::fgetc(f)) {
    line.push_back(static_cast<char>(ch));
  }
  return line;
}

}  // namespace

PeerProcess::PeerProcess(std::vector<std::string> args, const std::string& unset,
                         const std::string& set) {
  int requests[2] = {-1, -1};
  int replies[2] = {-1, -1};
  // Close-on-exec: a later child must not hold this child's request pipe open (it would never
  // see the end of its requests). dup2 onto 0 and 3 clears the flag for the child's own ends.
  if (::pipe2(requests, O_CLOEXEC) != 0 || ::pipe2(replies, O_CLOEXEC) != 0) {
    throw std::runtime_error("cannot create pipes for a peer process");
  }
  for (int* fd : {&requests[0], &requests[1], &replies[0], &replies[1]}) *fd = above_child_fds(*fd);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (unset.empty() || std::string(*e).rfind(unset + "=", 0) != 0) env.emplace_back(*e);
  }
  if (!set.empty()) env.push_back(set);
  std::vector<char*> argp, envp;
  for (auto& a : args) argp.push_back(a.data());
  for (auto& e : env) envp.push_back(e.data());
  argp.push_back(nullptr);
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, requests[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, replies[1], kReplyFd);
  std::fflush(stdout);
  const int spawned = ::posix_spawn(&pid_, argp[0], &actions, nullptr, argp.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(requests[0]);
  ::close(replies[1]);
  requests_ = ::fdopen(requests[1], "w");
  replies_ = ::fdopen(replies[0], "r");
  if (spawned != 0 || requests_ == nullptr || replies_ == nullptr) {
    throw std::runtime_error(fmt::format("cannot start the peer process '{}'", args[0]));
  }
  name_ = read_line();
  configuration_ = read_line();
}

PeerProcess::~PeerProcess() {
  if (requests_ != nullptr) std::fclose(requests_);
  if (replies_ != nullptr) std::fclose(replies_);
  if (pid_ > 0) {
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

std::string PeerProcess::read_line() {
  std::string line = get_line(replies_);
  if (line.empty()) throw std::runtime_error("a peer process ended before it answered");
  return line;
}

double PeerProcess::measure(std::size_t problem, Op op, int threads) {
  std::fprintf(requests_, "%zu %d %d\n", problem, static_cast<int>(op), threads);
  std::fflush(requests_);
  return std::stod(read_line());
}

int serve_peer_requests(const Implementation& impl, const std::vector<Problem>& problems,
                        const Inputs& (*inputs_for)(const Problem&), double min_time,
                        int repetitions) {
  std::FILE* replies = ::fdopen(kReplyFd, "w");
  if (replies == nullptr) throw std::runtime_error("--peer-child: no reply channel (fd 3)");
  fmt::print(replies, "{}\n{}\n", impl.name, impl.describe != nullptr ? impl.describe() : "");
  std::fflush(replies);
  for (std::string line = get_line(stdin); !line.empty(); line = get_line(stdin)) {
    std::size_t problem = 0;
    int op = 0;
    int threads = 0;
    if (std::sscanf(line.c_str(), "%zu %d %d", &problem, &op, &threads) != 3 ||
        problem >= problems.size() || op < 0 || op > 2 || threads < 1) {
      throw std::runtime_error(fmt::format("--peer-child: bad request '{}'", line));
    }
    const Problem& p = problems[problem];
    impl.set_threads(threads);
    auto runner = impl.make(p, static_cast<Op>(op), inputs_for(p));
    const double seconds = runner ? median_seconds(*runner, min_time, repetitions) : -1.0;
    fmt::print(replies, "{:.9e}\n", seconds);
    std::fflush(replies);
  }
  std::fclose(replies);
  return 0;
}

}  // namespace bnorm::bench
