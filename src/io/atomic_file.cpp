// write_file_atomically: temp file + fsync + rename + directory fsync (POSIX).
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/io.hpp"

namespace bnorm {
namespace {

[[noreturn]] void fail(std::string_view what, const std::filesystem::path& path, int error) {
  throw Error(fmt::format("{} '{}': {}", what, path.string(), std::strerror(error)));
}

// Closes the descriptor and removes the temporary file unless released.
class TempFile {
 public:
  explicit TempFile(std::filesystem::path path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot create temporary file", path_, errno);
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!released_) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write_all(std::span<const std::byte> bytes) {
    const std::byte* p = bytes.data();
    std::size_t left = bytes.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail("cannot write", path_, errno);
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }
  void sync_and_close() {
    if (::fsync(fd_) != 0) fail("cannot fsync", path_, errno);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("cannot close", path_, errno);
  }
  void release() { released_ = true; }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  bool released_ = false;
};

}  // namespace

void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes,
                           const std::function<void()>& before_rename) {
  const std::filesystem::path directory =
      path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  // pid + a process-wide counter: two threads (or two calls) never share a temporary file.
  static std::atomic<unsigned long> serial{0};
  TempFile temp(directory / fmt::format(".{}.tmp.{}.{}", path.filename().string(), ::getpid(),
                                        serial.fetch_add(1)));
  temp.write_all(bytes);
  temp.sync_and_close();
  if (before_rename) before_rename();
  if (std::rename(temp.path().c_str(), path.c_str()) != 0) fail("cannot rename onto", path, errno);
  temp.release();
  // Make the rename itself durable.
  const int dir = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

void write_file_atomically(const std::filesystem::path& path, std::string_view text,
                           const std::function<void()>& before_rename) {
  write_file_atomically(path, std::as_bytes(std::span<const char>(text.data(), text.size())),
                        before_rename);
}

std::string read_file(const std::filesystem::path& path) {
  // A directory opens as a stream on Linux and reads as empty: say what it is instead.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("cannot read", path, EISDIR);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open", path, errno);
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) fail("cannot read", path, errno);
  return std::move(contents).str();
}

}  // namespace bnorm
