// Shared by the IDX fuzz targets: bnorm::nn's IDX reader takes a path, so each input is written
// to one scratch file per process (in /dev/shm when it exists), then read as images and as labels.
//
// Contract checked on every input: the readers return or throw bnorm::Error; what they accept
// is self-consistent (pixels == count * rows * cols, every label < classes).
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "bnorm/error.hpp"
#include "bnorm/nn/idx.hpp"

namespace bnorm::fuzz {

inline const std::filesystem::path& scratch_path() {
  static const std::filesystem::path path = [] {
    const std::filesystem::path shm = "/dev/shm";
    const auto dir =
        std::filesystem::is_directory(shm) ? shm : std::filesystem::temp_directory_path();
    return dir / ("bnorm_fuzz_idx_" + std::to_string(::getpid()));
  }();
  return path;
}

inline void require(bool property) {
  if (!property) std::abort();
}

inline void read_as_idx(const std::uint8_t* data, std::size_t size) {
  {
    std::ofstream out(scratch_path(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const nn::IdxImages images = nn::read_idx_images(scratch_path(), 0, 0);  // any rows, cols
    require(images.count >= 0 && images.rows >= 0 && images.cols >= 0);
    // count * rows * cols without overflow: with a zero dimension the others may be anything.
    std::uint64_t pixels = 0;
    if (images.count != 0 && images.rows != 0 && images.cols != 0) {
      require(!__builtin_mul_overflow(static_cast<std::uint64_t>(images.count),
                                      static_cast<std::uint64_t>(images.rows), &pixels) &&
              !__builtin_mul_overflow(pixels, static_cast<std::uint64_t>(images.cols), &pixels));
    }
    require(images.pixels.size() == pixels);
  } catch (const Error&) {
  }
  try {
    constexpr int classes = 10;
    for (const std::uint8_t label : nn::read_idx_labels(scratch_path(), classes)) {
      require(label < classes);
    }
  } catch (const Error&) {
  }
}

}  // namespace bnorm::fuzz
