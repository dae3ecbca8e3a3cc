// The implementations compiled into this bnorm-bench: bnorm first, then each baseline whose
// package was found at configure time (bench/CMakeLists.txt).
#include <filesystem>
#include <fstream>
#include <system_error>

#include "bench.hpp"

namespace bnorm::bench {

std::vector<Implementation> implementations() {
  std::vector<Implementation> impls = {bnorm_implementation("")};
#if defined(BNORM_BENCH_WITH_DNNL)
  impls.push_back(onednn_implementation());
#endif
#if defined(BNORM_BENCH_WITH_TORCH)
  impls.push_back(libtorch_implementation());
#endif
  return impls;
}

std::string loaded_library(const std::string& needle) {
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string file = std::filesystem::path(path).filename().string();
    if (file.find(needle) == std::string::npos) continue;
    std::error_code error;
    const auto real = std::filesystem::canonical(path, error);
    return error ? path : real.string();
  }
  return "none";
}

}  // namespace bnorm::bench
