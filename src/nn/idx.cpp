// IDX reader. Order of work, so that nothing is allocated from an unchecked number:
//   1. header (magic, type, ndim, dimensions) read through a small fixed buffer and checked;
//   2. payload size computed with overflow checks and capped at kMaxIdxBytes;
//   3. the size cross-checked against the file: plain files by their length, gzip files by the
//      ISIZE field of the gzip trailer (uncompressed size mod 2^32);
//   4. only then the payload is read (inflated in a stream, never past its size) into a buffer
//      that grows with the bytes actually read (a forged ISIZE costs no memory), and the end
//      checked: no byte after the payload, gzip stream complete.
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>

#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/nn/idx.hpp"

namespace bnorm::nn {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const fs::path& path, std::string_view field, std::string_view expected,
                       std::string_view actual) {
  throw Error(fmt::format("{}: {}: expected {}, got {}", path.string(), field, expected, actual));
}

// Bytes of a plain or gzip file, read sequentially.
class Source {
 public:
  explicit Source(const fs::path& path) : path_(path) {
    file_.open(path, std::ios::binary);
    if (!file_) fail(path, "file", "a readable file", std::strerror(errno));
    file_.seekg(0, std::ios::end);
    file_size_ = static_cast<std::uint64_t>(file_.tellg());
    file_.seekg(0);
    std::array<unsigned char, 2> magic{};
    file_.read(reinterpret_cast<char*>(magic.data()), 2);
    gzip_ = file_.gcount() == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    file_.clear();
    file_.seekg(0);
    if (gzip_) {
      stream_ = std::make_unique<z_stream>();
      std::memset(stream_.get(), 0, sizeof(z_stream));
      // 15 + 16: a gzip wrapper (not zlib or raw deflate) with the largest window.
      if (inflateInit2(stream_.get(), 15 + 16) != Z_OK) {
        stream_.reset();
        fail(path, "gzip stream", "zlib to initialize", "an inflateInit2 failure");
      }
    }
  }
  ~Source() {
    if (stream_) inflateEnd(stream_.get());
  }
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;

  [[nodiscard]] bool gzip() const { return gzip_; }
  // The compressed input ended before the gzip stream did.
  [[nodiscard]] bool truncated() const { return truncated_; }
  [[nodiscard]] std::uint64_t file_size() const { return file_size_; }

  // The gzip trailer's ISIZE: the uncompressed size modulo 2^32 (RFC 1952).
  [[nodiscard]] std::uint32_t gzip_isize() {
    if (file_size_ < 18)
      fail(path_, "gzip file size", "at least 18 bytes", fmt::format("{} bytes", file_size_));
    std::array<unsigned char, 4> b{};
    file_.clear();  // a short file may have set eofbit while filling the input buffer
    file_.seekg(static_cast<std::streamoff>(file_size_ - 4));
    file_.read(reinterpret_cast<char*>(b.data()), 4);
    file_.clear();
    file_.seekg(static_cast<std::streamoff>(consumed_));
    return std::uint32_t{b[0]} | std::uint32_t{b[1]} << 8 | std::uint32_t{b[2]} << 16 |
           std::uint32_t{b[3]} << 24;
  }

  // Reads up to n bytes; fewer only at the end of the data.
  std::size_t read(unsigned char* dst, std::size_t n) {
    if (!gzip_) {
      file_.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(n));
      const auto got = static_cast<std::size_t>(file_.gcount());
      consumed_ += got;
      return got;
    }
    z_stream& z = *stream_;
    std::size_t done = 0;
    while (done < n && !stream_end_) {
      if (z.avail_in == 0) {
        file_.read(reinterpret_cast<char*>(in_.data()), static_cast<std::streamsize>(in_.size()));
        const auto got = static_cast<uInt>(file_.gcount());
        consumed_ += got;
        if (got == 0) {
          truncated_ = true;
          break;
        }
        z.next_in = in_.data();
        z.avail_in = got;
      }
      const std::size_t want = std::min<std::size_t>(n - done, std::numeric_limits<uInt>::max());
      z.next_out = dst + done;
      z.avail_out = static_cast<uInt>(want);
      const int rc = inflate(&z, Z_NO_FLUSH);
      done += want - z.avail_out;
      if (rc == Z_STREAM_END) {
        stream_end_ = true;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        fail(path_, "gzip stream", "valid deflate data",
             fmt::format("zlib error '{}' after {} uncompressed bytes",
                         z.msg != nullptr ? z.msg : zError(rc), z.total_out));
      }
    }
    return done;
  }

  // After the payload: the data must end here.
  void expect_end(std::uint64_t payload_end) {
    unsigned char extra = 0;
    if (read(&extra, 1) != 0) {
      fail(path_, "trailing bytes", fmt::format("end of data after {} bytes", payload_end),
           "more data");
    }
    if (gzip_) {
      if (!stream_end_ || truncated_) {
        fail(path_, "gzip stream", "a complete gzip stream", "a truncated one");
      }
      // Bytes after the gzip member (a second member or garbage) are not IDX data either.
      if (stream_->avail_in != 0 || consumed_ < file_size_) {
        fail(path_, "trailing bytes", "end of file after the gzip stream",
             fmt::format("{} more bytes", file_size_ - consumed_ + stream_->avail_in));
      }
    }
  }

 private:
  fs::path path_;
  std::ifstream file_;
  std::uint64_t file_size_ = 0;
  std::uint64_t consumed_ = 0;
  bool gzip_ = false;
  bool stream_end_ = false;
  bool truncated_ = false;
  std::unique_ptr<z_stream> stream_;
  std::array<unsigned char, 1 << 16> in_{};
};

std::uint32_t big_endian(const unsigned char* b) {
  return std::uint32_t{b[0]} << 24 | std::uint32_t{b[1]} << 16 | std::uint32_t{b[2]} << 8 |
         std::uint32_t{b[3]};
}

struct Header {
  std::vector<std::uint32_t> dims;
  std::uint64_t header_bytes = 0;
  std::uint64_t payload_bytes = 0;
};

// Steps 1-3 of the file comment.
Header read_header(Source& src, const fs::path& path, std::uint32_t ndim, std::string_view kind) {
  std::array<unsigned char, 4> magic{};
  const std::size_t got = src.read(magic.data(), 4);
  if (got < 4) {
    fail(path, "header", "4 magic bytes 00 00 08 ndim", fmt::format("a file of {} bytes", got));
  }
  if (magic[0] != 0 || magic[1] != 0) {
    fail(path, "magic bytes 0-1", "00 00 (an IDX file)",
         fmt::format("{:02x} {:02x}", magic[0], magic[1]));
  }
  if (magic[2] != 0x08) {
    fail(path, "type (magic byte 2)", "0x08 (unsigned byte)", fmt::format("0x{:02x}", magic[2]));
  }
  if (magic[3] != ndim) {
    fail(path, "ndim (magic byte 3)", fmt::format("{} ({})", ndim, kind),
         fmt::format("{}", magic[3]));
  }
  std::array<unsigned char, 12> raw{};
  const std::size_t dim_bytes = 4 * std::size_t{ndim};
  const std::size_t got_dims = src.read(raw.data(), dim_bytes);
  if (got_dims < dim_bytes) {
    fail(path, "header", fmt::format("{} bytes of dimensions", dim_bytes),
         fmt::format("{} bytes", got_dims));
  }
  Header h;
  h.header_bytes = 4 + dim_bytes;
  std::uint64_t payload = 1;
  for (std::uint32_t k = 0; k < ndim; ++k) {
    h.dims.push_back(big_endian(raw.data() + 4 * k));
    // dims are < 2^32, so payload * dim overflows only if payload > 2^64 / 2^32: check first.
    if (h.dims.back() != 0 && payload > kMaxIdxBytes / h.dims.back()) {
      payload = kMaxIdxBytes + 1;
    } else {
      payload *= h.dims.back();
    }
  }
  h.payload_bytes = payload;
  if (payload > kMaxIdxBytes - h.header_bytes) {
    std::string dims;
    for (auto d : h.dims) dims += fmt::format("{}{}", dims.empty() ? "" : " x ", d);
    fail(path, "declared size", fmt::format("at most {} bytes", kMaxIdxBytes),
         fmt::format("dimensions {} (more than the cap)", dims));
  }
  const std::uint64_t total = h.header_bytes + h.payload_bytes;
  if (src.gzip()) {
    const std::uint32_t isize = src.gzip_isize();
    if (isize != static_cast<std::uint32_t>(total)) {
      fail(path, "gzip trailer ISIZE",
           fmt::format("{} (header + payload bytes the dimensions declare)", total),
           fmt::format("{}", isize));
    }
  } else if (src.file_size() != total) {
    fail(path, "file length",
         fmt::format("{} bytes ({} header + {} payload the dimensions declare)", total,
                     h.header_bytes, h.payload_bytes),
         fmt::format("{} bytes", src.file_size()));
  }
  return h;
}

// The payload buffer grows with what the stream actually delivers: a gzip trailer may lie about
// the size (ISIZE is 4 unchecked bytes at the end of the file). The buffer starts at
// min(declared, kFirstReserve) and is enlarged to the declared size only once that much has
// really been inflated. Reserved pages that are never written cost no memory (RSS), so a forged
// trailer costs what the stream really holds, and at most kFirstReserve of address space; a
// real file of up to kFirstReserve is read with no copy, a larger one with one copy of
// kFirstReserve bytes. (Doubling from 1 MiB instead made Fashion-MNIST's 47 MB load 2x slower
// here, from faulting in the intermediate buffers.)
constexpr std::size_t kReadChunk = std::size_t{1} << 20;
constexpr std::size_t kFirstReserve = std::size_t{64} << 20;

std::vector<std::uint8_t> read_payload(Source& src, const fs::path& path, const Header& h) {
  const auto declared = static_cast<std::size_t>(h.payload_bytes);
  std::vector<std::uint8_t> data;
  while (data.size() < declared) {
    if (data.size() == data.capacity()) {
      data.reserve(data.capacity() == 0 ? std::min(declared, kFirstReserve) : declared);
    }
    const std::size_t want = std::min(kReadChunk, data.capacity() - data.size());
    const std::size_t at = data.size();
    data.resize(at + want);  // within the capacity: no reallocation
    const std::size_t got = src.read(data.data() + at, want);
    data.resize(at + got);
    if (got < want) break;  // end of the data
  }
  if (data.size() != declared && src.gzip() && src.truncated()) {
    fail(path, "gzip stream",
         fmt::format("a complete stream of {} uncompressed bytes", h.header_bytes + declared),
         fmt::format("a stream truncated after {} bytes", h.header_bytes + data.size()));
  }
  if (data.size() != declared) {
    fail(path, "payload length", fmt::format("{} bytes", declared),
         fmt::format("{} bytes", data.size()));
  }
  // One byte past the payload: a stream that runs on is rejected here, after the declared size.
  src.expect_end(h.header_bytes + h.payload_bytes);
  return data;
}

}  // namespace

IdxImages read_idx_images(const fs::path& path, std::int64_t expected_rows,
                          std::int64_t expected_cols) {
  Source src(path);
  const Header h = read_header(src, path, 3, "images");
  if (expected_rows > 0 && h.dims[1] != expected_rows) {
    fail(path, "rows (dimension 1)", fmt::format("{}", expected_rows),
         fmt::format("{}", h.dims[1]));
  }
  if (expected_cols > 0 && h.dims[2] != expected_cols) {
    fail(path, "cols (dimension 2)", fmt::format("{}", expected_cols),
         fmt::format("{}", h.dims[2]));
  }
  IdxImages images;
  images.count = h.dims[0];
  images.rows = h.dims[1];
  images.cols = h.dims[2];
  images.pixels = read_payload(src, path, h);
  return images;
}

std::vector<std::uint8_t> read_idx_labels(const fs::path& path, int classes) {
  Source src(path);
  const Header h = read_header(src, path, 1, "labels");
  std::vector<std::uint8_t> labels = read_payload(src, path, h);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= classes) {
      fail(path, fmt::format("label {}", i), fmt::format("a class in [0, {})", classes),
           fmt::format("{}", labels[i]));
    }
  }
  return labels;
}

namespace {

fs::path find_file(const fs::path& dir, const std::string& stem) {
  for (const auto& name : {stem + ".gz", stem}) {
    if (fs::exists(dir / name)) return dir / name;
  }
  throw Error(fmt::format(
      "{}: no such file (nor {}.gz). The Fashion-MNIST files are installed by "
      "'apt-get install dataset-fashion-mnist' (into /usr/share/datasets/fashion-mnist), or "
      "pass the dataset directory DIR with {{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]",
      (dir / stem).string(), stem));
}

}  // namespace

Dataset load_idx_dataset(const fs::path& dir, const std::string& split) {
  if (!fs::is_directory(dir)) {
    throw Error(fmt::format(
        "dataset directory {}: no such directory. The Fashion-MNIST files are installed by "
        "'apt-get install dataset-fashion-mnist' (into /usr/share/datasets/fashion-mnist), or "
        "pass the dataset directory DIR with {{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]",
        dir.string()));
  }
  const fs::path images_path = find_file(dir, split + "-images-idx3-ubyte");
  const fs::path labels_path = find_file(dir, split + "-labels-idx1-ubyte");
  Dataset data;
  data.name = split;
  data.images = read_idx_images(images_path);
  data.labels = read_idx_labels(labels_path);
  if (static_cast<std::int64_t>(data.labels.size()) != data.images.count) {
    fail(labels_path, "count (dimension 0)",
         fmt::format("{} labels, one per image of {}", data.images.count, images_path.string()),
         fmt::format("{}", data.labels.size()));
  }
  return data;
}

}  // namespace bnorm::nn
