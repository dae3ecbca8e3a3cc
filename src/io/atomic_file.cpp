// write_file_atomically: temp file + fsync + rename + directory fsync (POSIX).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <new>

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

// ".<name>.tmp.<pid>.<serial>" in the target's directory (so that the rename stays within one
// filesystem, hence atomic). pid + a process-wide counter: two threads (or two calls) never
// share a temporary file, so <name> may be shortened to keep the whole within NAME_MAX (a legal
// 250-byte name plus the suffix would not fit) without losing uniqueness.
std::filesystem::path temporary_path(const std::filesystem::path& directory,
                                     const std::filesystem::path& path) {
  static std::atomic<unsigned long> serial{0};
  const std::string suffix = fmt::format(".tmp.{}.{}", ::getpid(), serial.fetch_add(1));
  std::string name = path.filename().string();
  long name_max = ::pathconf(directory.c_str(), _PC_NAME_MAX);
  if (name_max <= 0) name_max = NAME_MAX;
  const std::size_t room = static_cast<std::size_t>(name_max) - 1 - suffix.size();
  if (name.size() > room) {
    std::size_t cut = room;
    // Cut at the start of a UTF-8 character (continuation bytes are 10xxxxxx).
    while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xc0) == 0x80) --cut;
    name.resize(cut);
  }
  return directory / ("." + name + suffix);
}

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

class Descriptor {
 public:
  explicit Descriptor(int fd) : fd_(fd) {}
  ~Descriptor() { ::close(fd_); }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes,
                           const std::function<void()>& before_rename) {
  const std::filesystem::path directory =
      path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  TempFile temp(temporary_path(directory, path));
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

std::string read_file(const std::filesystem::path& path, std::uint64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever (it is refused
  // below); regular files ignore the flag.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) fail("cannot open", path, errno);
  const Descriptor file(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("cannot stat", path, errno);
  if (!S_ISREG(st.st_mode)) {
    throw Error(fmt::format("cannot read '{}': it is {}; expected a regular file", path.string(),
                            kind_of(st.st_mode)));
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > max_bytes) {
    throw Error(
        fmt::format("cannot read '{}': {} bytes; expected at most {} (the limit for "
                    "this kind of file)",
                    path.string(), size, max_bytes));
  }
  std::string bytes;
  try {
    bytes.resize(static_cast<std::size_t>(size));
  } catch (const std::bad_alloc&) {
    throw Error(fmt::format("cannot read '{}': no memory for its {} bytes", path.string(), size));
  }
  std::size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read", path, errno);
    if (n == 0) {
      throw Error(
          fmt::format("cannot read '{}': short read: the file ended after {} of the {} "
                      "bytes its size said (it changed while being read)",
                      path.string(), got, size));
    }
    got += static_cast<std::size_t>(n);
  }
  // Read to the end: a file may have grown, and some (e.g. in /proc) report size 0.
  char more[4096];
  while (true) {
    const ssize_t n = ::read(fd, more, sizeof more);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read", path, errno);
    if (n == 0) break;
    if (bytes.size() + static_cast<std::size_t>(n) > max_bytes) {
      throw Error(
          fmt::format("cannot read '{}': more than {} bytes (it grew while being read); "
                      "expected at most {}",
                      path.string(), bytes.size(), max_bytes));
    }
    bytes.append(more, static_cast<std::size_t>(n));
  }
  return bytes;
}

}  // namespace bnorm
