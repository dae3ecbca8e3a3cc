// The safetensors JSON header, parsed into plain entries (syntax and structure only; the meaning
// of dtypes, shapes and offsets is checked by safetensors.cpp).
//
// Guarantees for any input of n bytes: time O(n log k) (k = keys of one object; the log is the
// ordered set that detects repeated keys), memory O(n), stack depth bounded (no recursion at all).
// Rejected: a NUL byte anywhere; nesting deeper than kMaxHeaderDepth; a key repeated in any
// object; anything but spaces after the closing brace; any JSON error. Untrusted text in messages
// is quoted and truncated (io/message.hpp: excerpt).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace bnorm::safetensors::detail {

// {name: {"dtype": s, "shape": [n...], "data_offsets": [b, e]}}: the format needs 3 levels.
inline constexpr int kMaxHeaderDepth = 3;

struct HeaderEntry {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;  // each >= 0
  std::uint64_t begin = 0, end = 0;
};

struct Header {
  std::map<std::string, std::string> metadata;
  std::vector<HeaderEntry> entries;  // in file order; names unique, never "__metadata__"
};

// Throws bnorm::Error "safetensors file '<source>': <what was wrong>; expected <what>".
[[nodiscard]] Header parse_header(std::string_view text, std::string_view source);

}  // namespace bnorm::safetensors::detail
