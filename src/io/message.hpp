// Quoting untrusted text into error messages: a file's tensor names, keys and values may be
// megabytes long or hold control characters, so a message shows a bounded, printable excerpt.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace bnorm {

// 'text' in single quotes, control bytes as \xNN, cut after `max_bytes` (on a UTF-8 character
// boundary) with the full size said: 'abc…' (truncated, 1048576 bytes).
[[nodiscard]] std::string excerpt(std::string_view text, std::size_t max_bytes = 64);

// "2, 3, 4" for a shape, at most `max_dims` of them then "… (N dims)".
[[nodiscard]] std::string joined_dims(std::span<const std::int64_t> dims, std::size_t max_dims = 8);

}  // namespace bnorm
