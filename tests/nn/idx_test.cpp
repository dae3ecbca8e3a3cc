// IDX reader: the valid fixtures load; every committed malformed file is rejected with a message
// naming the file, the field, the expected and the actual value.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>

#include "bnorm/error.hpp"
#include "bnorm/nn/idx.hpp"

namespace bnorm::nn {
namespace {

const std::filesystem::path kData = std::filesystem::path(BNORM_TESTS_DIR) / "cli" / "data";

struct Case {
  const char* file;
  bool labels;
  const char* field;
  const char* expected;
  const char* actual;
};

// One row per committed file in tests/cli/data/malformed (make_data.py writes them).
const Case kCases[] = {
    {"short-header-images", false, "header", "4 magic bytes", "a file of 3 bytes"},
    {"bad-magic-images", false, "magic bytes 0-1", "00 00", "1f 00"},
    {"bad-type-images", false, "type (magic byte 2)", "0x08 (unsigned byte)", "0x0d"},
    {"bad-ndim-images", false, "ndim (magic byte 3)", "3 (images)", "got 1"},
    {"bad-rows-images", false, "rows (dimension 1)", "expected 28", "got 27"},
    {"bad-cols-images", false, "cols (dimension 2)", "expected 28", "got 29"},
    {"truncated-images", false, "file length", "1584 bytes", "1574 bytes"},
    {"trailing-images", false, "file length", "1584 bytes", "1586 bytes"},
    {"huge-count-images", false, "declared size", "at most 1073741824 bytes",
     "4294967295 x 28 x 28"},
    {"truncated-images.gz", false, "gzip stream", "a complete stream of 1584 uncompressed bytes",
     "truncated after 157 bytes"},
    {"corrupt-images.gz", false, "gzip stream", "valid deflate data", "zlib error"},
    {"trailing-images.gz", false, "gzip trailer ISIZE", "1584", "1585"},
    {"isize-mismatch-images.gz", false, "gzip trailer ISIZE", "1584", "12345"},
    {"bad-ndim-labels", true, "ndim (magic byte 3)", "1 (labels)", "got 3"},
    {"bad-label-labels", true, "label 1", "a class in [0, 10)", "got 10"},
};

TEST(NnIdx, EveryMalformedFileIsRejectedWithFieldExpectedAndActual) {
  for (const Case& c : kCases) {
    const auto path = kData / "malformed" / c.file;
    ASSERT_TRUE(std::filesystem::exists(path)) << path;
    try {
      if (c.labels) {
        (void)read_idx_labels(path);
      } else {
        (void)read_idx_images(path);
      }
      ADD_FAILURE() << c.file << ": accepted";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(path.string()), std::string::npos) << m;
      EXPECT_NE(m.find(std::string(c.field) + ": expected"), std::string::npos) << m;
      EXPECT_NE(m.find(c.expected), std::string::npos) << m;
      EXPECT_NE(m.find(c.actual), std::string::npos) << m;
    }
  }
}

TEST(NnIdx, ValidSubsetLoadsFromGzipAndPlainFiles) {
  const Dataset train = load_idx_dataset(kData / "tiny", "train");  // .gz
  const Dataset test = load_idx_dataset(kData / "tiny", "t10k");    // plain
  EXPECT_EQ(train.size(), 300);
  EXPECT_EQ(test.size(), 100);
  EXPECT_EQ(train.features(), 784);
  // Real images: not all zero, labels cover several classes.
  int nonzero = 0;
  for (auto p : train.images.pixels) nonzero += p != 0;
  EXPECT_GT(nonzero, 300 * 784 / 4);
  std::array<int, 10> seen{};
  for (auto l : train.labels) ++seen.at(l);
  for (int c : seen) EXPECT_GT(c, 0);
}

TEST(NnIdx, CountMismatchNamesBothFiles) {
  try {
    (void)load_idx_dataset(kData / "malformed" / "pair-count", "train");
    FAIL() << "accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("train-labels-idx1-ubyte: count (dimension 0): expected 2 labels"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("train-images-idx3-ubyte"), std::string::npos) << m;
    EXPECT_NE(m.find("got 3"), std::string::npos) << m;
  }
}

TEST(NnIdx, MissingDataSaysHowToGetIt) {
  for (const auto& dir : {kData / "no-such-dir", kData / "malformed"}) {
    try {
      (void)load_idx_dataset(dir, "train");
      FAIL() << "accepted " << dir;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(dir.string()), std::string::npos) << m;
      EXPECT_NE(m.find("apt-get install dataset-fashion-mnist"), std::string::npos) << m;
      EXPECT_NE(m.find("dataset directory DIR"), std::string::npos) << m;
    }
  }
}

// VmHWM/VmRSS of this process in KiB (0 where /proc is missing).
long status_kib(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  }
  return 0;
}

// Issue 13, finding 8: a gzip file declaring exactly the 1 GiB cap, with a trailer (ISIZE) that
// agrees, but 1,000 bytes of real data. The reader allocated (and zero-filled) the whole GiB
// before finding that out; now its buffer grows with the bytes actually inflated.
TEST(NnIdx, AForgedGzipTrailerCostsNoMemory) {
  const auto path = kData / "malformed" / "forged-isize-bomb-labels.gz";
  {
    // Reset the peak-RSS mark (Linux >= 4.0) so that VmHWM measures this read alone.
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";
    clear.flush();
    if (!clear || status_kib("VmHWM:") == 0) GTEST_SKIP() << "cannot reset the peak-RSS mark";
  }
  const long before = status_kib("VmRSS:");
  try {
    (void)read_idx_labels(path, 256);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("gzip stream: expected valid deflate data"), std::string::npos) << m;
    EXPECT_NE(m.find("incorrect length check"), std::string::npos) << m;
  }
  const long peak_growth_kib = status_kib("VmHWM:") - before;
  EXPECT_LT(peak_growth_kib, 64 * 1024) << "KiB; the file declares 1 GiB and holds 1,008 bytes";
}

}  // namespace
}  // namespace bnorm::nn
