// safetensors reader and writer. The reader trusts nothing: every length, offset and shape is
// checked (with overflow-safe arithmetic) before it is used.
#include "bnorm/safetensors.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "bnorm/error.hpp"
#include "bnorm/io.hpp"

namespace bnorm::safetensors {
namespace {

using nlohmann::json;

struct DtypeInfo {
  Dtype dtype;
  std::string_view name;
  std::size_t size;
};
constexpr DtypeInfo kDtypes[] = {
    {Dtype::kBool, "BOOL", 1}, {Dtype::kU8, "U8", 1},   {Dtype::kI32, "I32", 4},
    {Dtype::kI64, "I64", 8},   {Dtype::kF16, "F16", 2}, {Dtype::kBF16, "BF16", 2},
    {Dtype::kF32, "F32", 4},   {Dtype::kF64, "F64", 8},
};

const DtypeInfo& info(Dtype dtype) {
  for (const auto& d : kDtypes) {
    if (d.dtype == dtype) return d;
  }
  throw Error("safetensors: unknown dtype enumerator");
}

// Whether every running product of the dims, taken in order, fits in int64 (so Tensor::numel
// cannot overflow, even for a shape such as [2^32, 2^31 + 1, 0] whose product is 0).
bool numel_fits(std::span<const std::int64_t> shape) {
  std::int64_t n = 1;
  for (const std::int64_t d : shape) {
    if (d < 0 || (d != 0 && n > std::numeric_limits<std::int64_t>::max() / d)) return false;
    n *= d;
  }
  return true;
}

// numel * element size; false on overflow or a negative dim.
bool byte_count(std::span<const std::int64_t> shape, std::size_t element, std::uint64_t& out) {
  if (!numel_fits(shape)) return false;
  std::uint64_t n = element;
  for (const std::int64_t d : shape) {
    if (d < 0) return false;
    const auto u = static_cast<std::uint64_t>(d);
    if (u != 0 && n > std::numeric_limits<std::uint64_t>::max() / u) return false;
    n *= u;
  }
  out = n;
  return true;
}

[[noreturn]] void malformed(std::string_view source, std::string_view what) {
  throw Error(fmt::format("safetensors file '{}': {}", source, what));
}

}  // namespace

std::size_t dtype_size(Dtype dtype) {
  return info(dtype).size;
}
std::string_view dtype_name(Dtype dtype) {
  return info(dtype).name;
}

std::int64_t Tensor::numel() const {
  std::int64_t n = 1;
  for (const auto d : shape) n *= d;
  return n;
}

template <class T>
std::vector<T> Tensor::values(std::string_view what) const {
  if (dtype != dtype_of<T>()) {
    throw Error(fmt::format("{}: dtype {}; expected {}", what, dtype_name(dtype),
                            dtype_name(dtype_of<T>())));
  }
  std::vector<T> out(data.size() / sizeof(T));
  std::memcpy(out.data(), data.data(), out.size() * sizeof(T));
  return out;
}
template std::vector<float> Tensor::values<float>(std::string_view) const;
template std::vector<double> Tensor::values<double>(std::string_view) const;
template std::vector<std::int64_t> Tensor::values<std::int64_t>(std::string_view) const;
template std::vector<std::int32_t> Tensor::values<std::int32_t>(std::string_view) const;
template std::vector<std::uint8_t> Tensor::values<std::uint8_t>(std::string_view) const;

const Tensor& File::expect(const std::string& name, Dtype dtype,
                           std::span<const std::int64_t> shape) const {
  const auto it = tensors.find(name);
  if (it == tensors.end()) {
    std::vector<std::string> names;
    for (const auto& [n, t] : tensors) names.push_back(n);
    malformed(source,
              fmt::format("no tensor '{}'; the file has [{}]", name, fmt::join(names, ", ")));
  }
  const Tensor& t = it->second;
  if (t.dtype != dtype) {
    malformed(source, fmt::format("tensor '{}' has dtype {}; expected {}", name,
                                  dtype_name(t.dtype), dtype_name(dtype)));
  }
  if (!std::equal(t.shape.begin(), t.shape.end(), shape.begin(), shape.end())) {
    malformed(source, fmt::format("tensor '{}' has shape [{}]; expected [{}]", name,
                                  fmt::join(t.shape, ", "), fmt::join(shape, ", ")));
  }
  return t;
}

std::vector<std::byte> serialize(std::span<const TensorRef> tensors,
                                 const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    std::uint64_t bytes = 0;
    if (!byte_count(t.shape, dtype_size(t.dtype), bytes) || bytes != t.data.size()) {
      throw Error(
          fmt::format("safetensors: tensor '{}' has {} bytes; expected {} for dtype {} "
                      "and shape [{}]",
                      t.name, t.data.size(), bytes, dtype_name(t.dtype), fmt::join(t.shape, ", ")));
    }
    if (t.name == "__metadata__" || header.contains(t.name)) {
      throw Error(
          fmt::format("safetensors: tensor name '{}' is reserved or repeated; expected "
                      "unique names",
                      t.name));
    }
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {  // e.g. a name that is not valid UTF-8
    throw Error(
        fmt::format("safetensors: cannot write the header: {}; expected UTF-8 tensor "
                    "names and metadata",
                    e.what()));
  }
  // Pad the header with spaces to 8 bytes, so the data buffer is aligned (as the reference does).
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<std::byte> out(8 + text.size() + offset);
  const std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::byte* data = out.data() + 8 + text.size();
  for (const auto& t : tensors) {
    if (!t.data.empty()) std::memcpy(data, t.data.data(), t.data.size());
    data += t.data.size();
  }
  return out;
}

void save(const std::filesystem::path& path, std::span<const TensorRef> tensors,
          const std::map<std::string, std::string>& metadata) {
  write_file_atomically(path, serialize(tensors, metadata));
}

File parse(std::span<const std::byte> bytes, std::string_view source) {
  File file;
  file.source = std::string(source);
  if (bytes.size() < 8) {
    malformed(source, fmt::format("truncated: {} bytes; expected at least 8 (the header length)",
                                  bytes.size()));
  }
  std::uint64_t header_bytes = 0;
  for (int i = 0; i < 8; ++i) header_bytes |= std::to_integer<std::uint64_t>(bytes[i]) << (8 * i);
  if (header_bytes > kMaxHeaderBytes) {
    malformed(source, fmt::format("header too large: {} bytes; expected at most {}", header_bytes,
                                  kMaxHeaderBytes));
  }
  if (header_bytes > bytes.size() - 8) {
    malformed(source, fmt::format("truncated: header length {} but only {} bytes follow it",
                                  header_bytes, bytes.size() - 8));
  }
  const auto* text = reinterpret_cast<const char*>(bytes.data() + 8);
  json header;
  // nlohmann keeps the last of repeated keys silently; a repeated tensor name would lose a
  // tensor (and show up later as a misleading "gap"), so top-level keys are checked here.
  std::set<std::string> names;
  std::string repeated;
  const json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && repeated.empty() &&
        !names.insert(parsed.get<std::string>()).second) {
      repeated = parsed.get<std::string>();
    }
    return true;
  };
  try {
    header = json::parse(text, text + header_bytes, on_event);
  } catch (const json::exception& e) {
    malformed(source, fmt::format("bad JSON header: {}", e.what()));
  }
  if (!repeated.empty()) {
    malformed(source, fmt::format("bad JSON header: key '{}' appears more than once; expected "
                                  "unique tensor names",
                                  repeated));
  }
  if (!header.is_object()) malformed(source, "bad JSON header: expected an object");
  const std::uint64_t buffer = bytes.size() - 8 - header_bytes;
  const std::byte* data = bytes.data() + 8 + header_bytes;

  struct Span {
    std::uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) malformed(source, "__metadata__ is not an object of strings");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          malformed(source, fmt::format("__metadata__['{}'] is not a string", key));
        }
        file.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    // (An init-capture: clang 14 cannot capture a structured binding, which C++20 allows.)
    const auto where = [&, &tensor = name](std::string_view what) {
      malformed(source, fmt::format("tensor '{}': {}", tensor, what));
    };
    if (!entry.is_object()) where("entry is not an object");
    if (!entry.contains("dtype") || !entry["dtype"].is_string()) where("missing string 'dtype'");
    if (!entry.contains("shape") || !entry["shape"].is_array()) where("missing array 'shape'");
    if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2) {
      where("missing 'data_offsets' [begin, end]");
    }
    Tensor t;
    const auto dtype = entry["dtype"].get<std::string>();
    const auto known = std::find_if(std::begin(kDtypes), std::end(kDtypes),
                                    [&](const DtypeInfo& d) { return d.name == dtype; });
    if (known == std::end(kDtypes)) where(fmt::format("unknown dtype '{}'", dtype));
    t.dtype = known->dtype;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0) {
        where(fmt::format("shape {} has an entry that is not an integer >= 0",
                          entry["shape"].dump()));
      }
      t.shape.push_back(d.get<std::int64_t>());
    }
    if (!numel_fits(t.shape)) {
      where(fmt::format("shape [{}] has more elements than int64 can count",
                        fmt::join(t.shape, ", ")));
    }
    for (const auto& o : entry["data_offsets"]) {
      if (!o.is_number_unsigned()) where("data_offsets must be integers >= 0");
    }
    const auto begin = entry["data_offsets"][0].get<std::uint64_t>();
    const auto end = entry["data_offsets"][1].get<std::uint64_t>();
    if (begin > end || end > buffer) {
      where(
          fmt::format("data_offsets [{}, {}] out of range; expected begin <= end <= {} (the "
                      "data buffer size)",
                      begin, end, buffer));
    }
    std::uint64_t expected = 0;
    if (!byte_count(t.shape, dtype_size(t.dtype), expected) || expected != end - begin) {
      where(fmt::format("{} bytes for dtype {} and shape [{}]; expected {}", end - begin, dtype,
                        fmt::join(t.shape, ", "), expected));
    }
    t.data.assign(data + begin, data + end);
    spans.push_back({begin, end, name});
    file.tensors.emplace(name, std::move(t));
  }
  // The entries must tile the buffer: no overlap, no gap, nothing trailing.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t at = 0;
  for (const auto& s : spans) {
    if (s.begin != at) {
      malformed(source, fmt::format("tensor '{}' starts at byte {}; expected {} (tensors must "
                                    "not overlap or leave gaps)",
                                    s.name, s.begin, at));
    }
    at = s.end;
  }
  if (at != buffer) {
    malformed(source, fmt::format("data buffer has {} bytes; the tensors cover {} (truncated or "
                                  "trailing bytes)",
                                  buffer, at));
  }
  return file;
}

File load(const std::filesystem::path& path) {
  const std::string bytes = read_file(path);
  return parse(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())), path.string());
}

}  // namespace bnorm::safetensors
