// The bandwidth probe (bandwidth.cpp).
#pragma once

#include <cstdint>
#include <vector>

namespace bnorm::bench {

// Bytes of the DRAM-sized probe: far beyond any last-level cache of the machines we run on.
inline constexpr std::int64_t kDramProbeBytes = std::int64_t{512} << 20;

class Probe {
 public:
  explicit Probe(std::int64_t bytes);
  void copy();           // moves 2 * bytes
  std::uint32_t read();  // moves bytes
 private:
  std::int64_t bytes_;
  std::vector<std::uint32_t> src_, dst_;
};

}  // namespace bnorm::bench
