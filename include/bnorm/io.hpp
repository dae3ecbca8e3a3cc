// Crash-safe file output.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace bnorm {

// Writes `bytes` to `path` atomically: to a temporary file in the same directory (named
// ".<name>.tmp.<pid>.<serial>", the name shortened to fit NAME_MAX), fsync, rename
// over `path`, fsync the directory. A crash at any point leaves either the old file or the new
// one, never a mix. `before_rename` (tests) runs after the data is durable and before the rename;
// if it throws, the temporary file is removed, `path` is untouched and the exception propagates.
// Throws: bnorm::Error naming the path and the system error when a step fails.
void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes,
                           const std::function<void()>& before_rename = {});
void write_file_atomically(const std::filesystem::path& path, std::string_view text,
                           const std::function<void()>& before_rename = {});

// Reads a whole regular file of at most `max_bytes` bytes, never holding more than that.
// Throws bnorm::Error naming the path and the cause: it cannot be opened (errno text), it is not a
// regular file (a directory, a device such as /dev/zero, a FIFO: refused before reading), its size
// exceeds `max_bytes` (refused before allocating), memory for it cannot be allocated, a read fails
// (errno text), or the file is shorter than its size said (changed while being read).
[[nodiscard]] std::string read_file(const std::filesystem::path& path, std::uint64_t max_bytes);

}  // namespace bnorm
