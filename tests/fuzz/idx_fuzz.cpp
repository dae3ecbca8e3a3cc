// Fuzz target: the IDX reader (bnorm::nn::read_idx_images / read_idx_labels) on any bytes,
// plain or gzip (the reader recognizes gzip by its magic bytes). Seeds: corpus/idx/seeds.
#include "idx_fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  bnorm::fuzz::read_as_idx(data, size);
  return 0;
}
