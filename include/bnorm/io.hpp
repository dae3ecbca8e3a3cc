// Crash-safe file output.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <span>
#include <string_view>

namespace bnorm {

// Writes `bytes` to `path` atomically: to a temporary file in the same directory, fsync, rename
// over `path`, fsync the directory. A crash at any point leaves either the old file or the new
// one, never a mix. `before_rename` (tests) runs after the data is durable and before the rename;
// if it throws, the temporary file is removed, `path` is untouched and the exception propagates.
// Throws: bnorm::Error naming the path and the system error when a step fails.
void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes,
                           const std::function<void()>& before_rename = {});
void write_file_atomically(const std::filesystem::path& path, std::string_view text,
                           const std::function<void()>& before_rename = {});

// Reads a whole file; throws bnorm::Error naming the path if it cannot.
[[nodiscard]] std::string read_file(const std::filesystem::path& path);

}  // namespace bnorm
