// bnorm/io.hpp on hostile paths (issue 13, findings 5 and 6): read_file refuses what is not a
// regular file, refuses sizes over the caller's cap before allocating, reports read errors with
// the file and errno text, never holds more than the cap; write_file_atomically works for names
// up to NAME_MAX (its temporary name is shortened to fit).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bnorm/batch_norm.hpp>
#include <bnorm/error.hpp>
#include <bnorm/io.hpp>
#include <bnorm/safetensors.hpp>
#include <climits>
#include <filesystem>
#include <fstream>
#include <string>

namespace bnorm {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir() {
  const auto dir =
      fs::temp_directory_path() / ("bnorm_io_test_" + std::to_string(::getpid()) + "_" +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string read_error(const fs::path& path, std::uint64_t cap) {
  try {
    (void)read_file(path, cap);
  } catch (const Error& e) {
    return e.what();
  }
  return "accepted";
}

// A sparse file of `bytes` (no disk space used); false where the filesystem cannot make one.
bool make_sparse(const fs::path& path, off_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return false;
  const bool ok = ::ftruncate(fd, bytes) == 0;
  ::close(fd);
  return ok;
}

TEST(ReadFile, RefusesWhatIsNotARegularFile) {
  const auto dir = temp_dir();
  std::string what = read_error("/dev/zero", 1 << 20);  // was read until memory ran out
  EXPECT_NE(what.find("cannot read '/dev/zero': it is a character device; expected a regular file"),
            std::string::npos)
      << what;
  what = read_error(dir, 1 << 20);
  EXPECT_NE(what.find("it is a directory"), std::string::npos) << what;
  // A FIFO without a writer: refused at once instead of blocking in open().
  const auto fifo = dir / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  what = read_error(fifo, 1 << 20);
  EXPECT_NE(what.find("it is a FIFO"), std::string::npos) << what;
  what = read_error(dir / "missing", 1 << 20);
  EXPECT_NE(what.find("cannot open '" + (dir / "missing").string() + "': No such file"),
            std::string::npos)
      << what;
}

TEST(ReadFile, RefusesASizeOverTheCapBeforeAllocating) {
  const auto path = temp_dir() / "sparse.safetensors";
  if (!make_sparse(path, off_t{8} << 30)) GTEST_SKIP() << "no sparse files here";
  // 8 GiB: refused from fstat alone (no allocation, no read).
  std::string what = read_error(path, std::uint64_t{1} << 30);
  EXPECT_NE(what.find("8589934592 bytes; expected at most 1073741824"), std::string::npos) << what;
  try {
    (void)safetensors::load(path, std::uint64_t{1} << 30);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("8589934592 bytes"), std::string::npos) << e.what();
  }
  fs::remove(path);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BNORM_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define BNORM_UNDER_SANITIZER 1
#endif
#endif

// An address-space limit below the file's size: the allocation failure is a bnorm::Error that
// says so (it was a file silently cut to what fitted, then reported as a size mismatch).
TEST(ReadFile, AnAllocationFailureIsReportedNotTruncated) {
#ifdef BNORM_UNDER_SANITIZER
  GTEST_SKIP() << "sanitizers reserve terabytes of address space: RLIMIT_AS cannot apply";
#else
  const auto path = temp_dir() / "sparse.safetensors";
  if (!make_sparse(path, off_t{8} << 30)) GTEST_SKIP() << "no sparse files here";
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Room for what the process has mapped now plus 1 GiB: the 8 GiB cannot be allocated.
    std::ifstream status("/proc/self/status");
    std::string line;
    long vm_kb = 0;
    while (std::getline(status, line)) {
      if (line.rfind("VmSize:", 0) == 0) vm_kb = std::stol(line.substr(7));
    }
    const rlim_t limit = static_cast<rlim_t>(vm_kb) * 1024 + (rlim_t{1} << 30);
    const rlimit rl{limit, limit};
    if (::setrlimit(RLIMIT_AS, &rl) != 0) ::_exit(3);
    try {
      (void)safetensors::load(path);  // the default cap (64 GiB) lets it through to allocation
    } catch (const Error& e) {
      const std::string what = e.what();
      ::_exit(what.find("no memory for its 8589934592 bytes") != std::string::npos ? 0 : 1);
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child crashed";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: wrong message, 2: not a bnorm::Error, 4: accepted";
  fs::remove(path);
#endif
}

TEST(ReadFile, ReadErrorsNameTheFileAndTheSystemError) {
  // /proc/self/mem is a regular file of size 0 whose first page (address 0) cannot be read: EIO.
  // The old reader returned 0 bytes ("truncated: 0 bytes").
  const std::string what = read_error("/proc/self/mem", 1 << 20);
  EXPECT_NE(what.find("cannot read '/proc/self/mem': Input/output error"), std::string::npos)
      << what;
}

TEST(ReadFile, ReadsToTheEndButNeverPastTheCap) {
  // procfs files report size 0 and have content.
  const std::string status = read_file("/proc/self/status", 1 << 20);
  EXPECT_NE(status.find("VmSize:"), std::string::npos);
  const std::string what = read_error("/proc/self/status", 16);
  EXPECT_NE(what.find("expected at most 16"), std::string::npos) << what;
  // Exactly the cap is fine.
  const auto path = temp_dir() / "exact";
  write_file_atomically(path, std::string_view("0123456789"));
  EXPECT_EQ(read_file(path, 10), "0123456789");
  EXPECT_NE(read_error(path, 9).find("10 bytes; expected at most 9"), std::string::npos);
}

// Finding 6: a legal file name of 250 (or NAME_MAX) bytes; the temporary name added ~20 bytes.
TEST(AtomicWrite, NamesUpToNameMaxWork) {
  const auto dir = temp_dir();
  const long name_max = ::pathconf(dir.c_str(), _PC_NAME_MAX);
  ASSERT_GT(name_max, 20);
  std::string utf8;  // multi-byte characters: the shortened temporary name must stay valid UTF-8
  while (static_cast<long>(utf8.size()) + 2 <= name_max) utf8 += "\xc3\xa9";
  for (const std::string& name : {std::string(238, 'a') + ".safetensors",
                                  std::string(static_cast<std::size_t>(name_max), 'b'), utf8}) {
    ASSERT_LE(static_cast<long>(name.size()), name_max);
    BatchNorm bn(3);
    bn.gamma()[1] = 2.5f;
    ASSERT_NO_THROW(bn.save(dir / name)) << name.size() << " bytes";
    BatchNorm again(3);
    again.load(dir / name);
    EXPECT_EQ(again.gamma()[1], 2.5f);
  }
  // Only the three files: no temporary left behind.
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 3);
}

}  // namespace
}  // namespace bnorm
