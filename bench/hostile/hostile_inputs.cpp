// Measures what hostile inputs cost the parsers (docs/reliability.md, "Hostile files"):
//   hostile_inputs entries N      parse time of a safetensors header of N zero-size tensors
//   hostile_inputs idx FILE       reads FILE as IDX labels (run under /usr/bin/time -v for the
//                                 peak memory of a gzip bomb)
//   hostile_inputs images FILE    reads FILE as 28x28 IDX images, timed (a real file's cost)
// Built with the benchmarks as bnorm-hostile-inputs; linked by hand against an older libbnorm.a,
// the same source measures the "before" figures (command lines in docs/reliability.md).
#include <time.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "bnorm/nn/idx.hpp"
#include "bnorm/safetensors.hpp"

namespace {

// {"t0000000":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},...}: the shape of finding 2.
std::vector<std::byte> many_entries(long n) {
  std::string header = "{";
  char name[32];
  for (long i = 0; i < n; ++i) {
    std::snprintf(name, sizeof name, "t%07ld", i);
    if (i > 0) header += ',';
    header += '"';
    header += name;
    header += R"(":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})";
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  std::vector<std::byte> file(8 + header.size());
  const std::uint64_t size = header.size();
  for (int i = 0; i < 8; ++i) file[i] = static_cast<std::byte>((size >> (8 * i)) & 0xff);
  for (std::size_t i = 0; i < header.size(); ++i) file[8 + i] = static_cast<std::byte>(header[i]);
  return file;
}

// CPU time: on a shared machine the wall time mostly measures the other processes.
double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: hostile_inputs entries N | idx FILE | images FILE\n");
    return 2;
  }
  const std::string what = argv[1];
  try {
    if (what == "entries") {
      const long n = std::atol(argv[2]);
      const auto file = many_entries(n);
      const auto start = std::chrono::steady_clock::now();
      const double cpu_start = cpu_seconds();
      const auto parsed = bnorm::safetensors::parse(file, "generated");
      const double cpu = cpu_seconds() - cpu_start;
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("entries %ld: header %zu bytes, parsed %zu tensors in %.3f s CPU (%.3f s wall)\n",
                  n, file.size() - 8, parsed.tensors.size(), cpu, s);
    } else if (what == "images") {
      const auto start = std::chrono::steady_clock::now();
      const auto images = bnorm::nn::read_idx_images(argv[2]);
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("images %s: %zu bytes in %.3f s\n", argv[2], images.pixels.size(), s);
    } else if (what == "idx") {
      const auto labels = bnorm::nn::read_idx_labels(argv[2], 256);
      std::printf("idx %s: accepted, %zu labels\n", argv[2], labels.size());
    } else {
      std::fprintf(stderr, "unknown mode '%s'\n", what.c_str());
      return 2;
    }
  } catch (const std::exception& e) {
    std::printf("rejected: %.300s\n", e.what());
    return 1;
  }
  return 0;
}
