// IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.
//
// Layout: magic 00 00 <type> <ndim>, ndim big-endian uint32 dimensions, then the payload.
// bnorm reads unsigned-byte (type 0x08) images (ndim 3) and labels (ndim 1).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace bnorm::nn {

struct IdxImages {
  std::int64_t count = 0, rows = 0, cols = 0;
  std::vector<std::uint8_t> pixels;  // count * rows * cols, row-major
};

// The largest uncompressed file accepted (header + payload); larger declared sizes are rejected
// before any allocation, and a gzip stream is never inflated past it.
inline constexpr std::uint64_t kMaxIdxBytes = std::uint64_t{1} << 30;

// Reads and validates the whole file before returning, allocating only once the header has been
// checked and the payload size is known to be within kMaxIdxBytes and, for gzip, equal to the
// size the gzip trailer declares; even then memory grows with the bytes actually inflated (a
// forged trailer costs nothing) and inflating stops at the first byte past the declared payload.
// gzip is recognized by its magic bytes, not by the name.
// Throws bnorm::Error with a message "<path>: <field>: expected <e>, got <a>" for: a file that
// cannot be opened, a short header, magic bytes 0 and 1 not zero, type not 0x08, ndim not 3
// (images) or 1 (labels), rows or cols not `expected_rows`/`expected_cols` (when > 0), size
// arithmetic overflow or over the cap, a payload shorter or longer than declared (trailing
// bytes), a corrupt or truncated gzip stream.
[[nodiscard]] IdxImages read_idx_images(const std::filesystem::path& path,
                                        std::int64_t expected_rows = 28,
                                        std::int64_t expected_cols = 28);
// Additionally checks every label < `classes`.
[[nodiscard]] std::vector<std::uint8_t> read_idx_labels(const std::filesystem::path& path,
                                                        int classes = 10);

// A labelled image set: images scaled to [0, 1] later, when a batch is gathered.
struct Dataset {
  std::string name;
  IdxImages images;
  std::vector<std::uint8_t> labels;
  [[nodiscard]] std::int64_t size() const { return images.count; }
  [[nodiscard]] std::int64_t features() const { return images.rows * images.cols; }
};

// Loads `<dir>/<split>-images-idx3-ubyte[.gz]` and `<dir>/<split>-labels-idx1-ubyte[.gz]`
// (split "train" or "t10k"; the .gz name is preferred when both exist).
// Throws bnorm::Error: for a missing directory or file, a message naming the path and saying
// how to get the data ("apt-get install dataset-fashion-mnist" or "--data DIR"); the readers'
// messages for malformed files; "count" mismatch between images and labels naming both files.
[[nodiscard]] Dataset load_idx_dataset(const std::filesystem::path& dir, const std::string& split);

}  // namespace bnorm::nn
