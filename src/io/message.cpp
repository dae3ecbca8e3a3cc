#include "io/message.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace bnorm {

std::string excerpt(std::string_view text, std::size_t max_bytes) {
  std::size_t shown = std::min(text.size(), max_bytes);
  // Back off to the start of a UTF-8 character (continuation bytes are 10xxxxxx).
  while (shown < text.size() && shown > 0 &&
         (static_cast<unsigned char>(text[shown]) & 0xc0) == 0x80) {
    --shown;
  }
  std::string out = "'";
  for (const char ch : text.substr(0, shown)) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += ch;
    }
  }
  if (shown < text.size()) return out + fmt::format("...' (truncated, {} bytes)", text.size());
  return out + "'";
}

std::string joined_dims(std::span<const std::int64_t> dims, std::size_t max_dims) {
  std::string out;
  for (std::size_t i = 0; i < dims.size() && i < max_dims; ++i) {
    out += fmt::format("{}{}", i == 0 ? "" : ", ", dims[i]);
  }
  if (dims.size() > max_dims) out += fmt::format(", ... ({} dims)", dims.size());
  return out;
}

}  // namespace bnorm
