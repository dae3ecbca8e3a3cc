// Fuzz target: the gzip layer of the IDX reader. Only inputs that start with the gzip magic
// bytes (1f 8b) are read, so that the whole campaign goes to the inflate path: corrupt and
// truncated streams, several members, trailers that disagree with the payload, bombs against
// kMaxIdxBytes. Seeds: corpus/gzip/seeds (the IDX seeds, gzip-compressed).
#include "idx_fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2 || data[0] != 0x1f || data[1] != 0x8b) return 0;
  bnorm::fuzz::read_as_idx(data, size);
  return 0;
}
