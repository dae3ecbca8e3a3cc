// parse_arch / format_arch: a small hand-written scanner, linear in the input.
#include "bnorm/nn/arch.hpp"

#include <charconv>

#include <fmt/format.h>

#include "bnorm/error.hpp"

namespace bnorm::nn {
namespace {

constexpr const char* kGrammar =
    "expected a comma-separated list of c<channels>[k<kernel>][s<stride>] (conv), "
    "p[<size>][s<stride>] (max pool) or f<units> (dense), e.g. c16,c16,p,c32,p,f128";
constexpr std::int64_t kMaxValue = 1 << 20;

[[noreturn]] void fail(std::string_view text, std::string_view item, std::size_t index) {
  throw Error(fmt::format("architecture '{}': item {} '{}' is not understood; {}", text, index + 1,
                          item, kGrammar));
}

// Reads a positive decimal number at `pos`; returns 0 (and leaves pos) when there is none.
std::int64_t number(std::string_view item, std::size_t& pos) {
  std::int64_t v = 0;
  const auto* begin = item.data() + pos;
  const auto [end, ec] = std::from_chars(begin, item.data() + item.size(), v);
  if (ec != std::errc() || end == begin || v <= 0 || v > kMaxValue) return 0;
  pos += static_cast<std::size_t>(end - begin);
  return v;
}

}  // namespace

std::vector<LayerSpec> parse_arch(std::string_view text) {
  std::vector<LayerSpec> arch;
  std::size_t start = 0;
  for (std::size_t index = 0;; ++index) {
    const std::size_t comma = text.find(',', start);
    const std::string_view item = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item.empty()) fail(text, item, index);
    LayerSpec spec;
    std::size_t pos = 1;
    switch (item[0]) {
      case 'c':
        spec.kind = LayerSpec::Kind::kConv;
        spec.units = number(item, pos);
        if (spec.units == 0) fail(text, item, index);
        spec.kernel = 3;
        spec.stride = 1;
        break;
      case 'p':
        spec.kind = LayerSpec::Kind::kPool;
        spec.kernel = 2;
        if (pos < item.size() && item[pos] != 's') {
          spec.kernel = number(item, pos);
          if (spec.kernel == 0) fail(text, item, index);
        }
        spec.stride = spec.kernel;
        break;
      case 'f':
        spec.kind = LayerSpec::Kind::kDense;
        spec.units = number(item, pos);
        if (spec.units == 0) fail(text, item, index);
        break;
      default:
        fail(text, item, index);
    }
    if (spec.kind == LayerSpec::Kind::kConv && pos < item.size() && item[pos] == 'k') {
      ++pos;
      spec.kernel = number(item, pos);
      if (spec.kernel == 0) fail(text, item, index);
    }
    if (spec.kind != LayerSpec::Kind::kDense && pos < item.size() && item[pos] == 's') {
      ++pos;
      spec.stride = number(item, pos);
      if (spec.stride == 0) fail(text, item, index);
    }
    if (pos != item.size()) fail(text, item, index);
    arch.push_back(spec);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return arch;
}

std::string format_arch(const std::vector<LayerSpec>& arch) {
  std::string text;
  for (const auto& l : arch) {
    if (!text.empty()) text += ',';
    switch (l.kind) {
      case LayerSpec::Kind::kConv:
        text += fmt::format("c{}", l.units);
        if (l.kernel != 3) text += fmt::format("k{}", l.kernel);
        if (l.stride != 1) text += fmt::format("s{}", l.stride);
        break;
      case LayerSpec::Kind::kPool:
        text += 'p';
        if (l.kernel != 2) text += fmt::format("{}", l.kernel);
        if (l.stride != l.kernel) text += fmt::format("s{}", l.stride);
        break;
      case LayerSpec::Kind::kDense:
        text += fmt::format("f{}", l.units);
        break;
    }
  }
  return text;
}

}  // namespace bnorm::nn
