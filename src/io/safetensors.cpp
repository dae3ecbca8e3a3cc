// safetensors reader and writer. The reader trusts nothing: every length, offset and shape is
// checked (with overflow-safe arithmetic) before it is used.
#include "bnorm/safetensors.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "bnorm/error.hpp"
#include "bnorm/io.hpp"
#include "io/message.hpp"
#include "io/safetensors_header.hpp"

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
    // A file may hold a million names: list a few.
    constexpr std::size_t kListed = 16;
    std::string names;
    std::size_t listed = 0;
    for (const auto& [n, t] : tensors) {
      if (listed == kListed) {
        names += fmt::format(", ... ({} tensors)", tensors.size());
        break;
      }
      names += (listed++ == 0 ? "" : ", ") + excerpt(n);
    }
    malformed(source, fmt::format("no tensor {}; the file has [{}]", excerpt(name), names));
  }
  const Tensor& t = it->second;
  if (t.dtype != dtype) {
    malformed(source, fmt::format("tensor {} has dtype {}; expected {}", excerpt(name),
                                  dtype_name(t.dtype), dtype_name(dtype)));
  }
  if (!std::equal(t.shape.begin(), t.shape.end(), shape.begin(), shape.end())) {
    malformed(source, fmt::format("tensor {} has shape [{}]; expected [{}]", excerpt(name),
                                  joined_dims(t.shape), joined_dims(shape)));
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
  detail::Header header = detail::parse_header(
      std::string_view(reinterpret_cast<const char*>(bytes.data() + 8), header_bytes), source);
  file.metadata = std::move(header.metadata);
  const std::uint64_t buffer = bytes.size() - 8 - header_bytes;
  const std::byte* data = bytes.data() + 8 + header_bytes;

  struct Span {
    std::uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  spans.reserve(header.entries.size());
  for (auto& entry : header.entries) {
    const auto where = [&](std::string_view what) {
      malformed(source, fmt::format("tensor {}: {}", excerpt(entry.name), what));
    };
    Tensor t;
    const auto known = std::find_if(std::begin(kDtypes), std::end(kDtypes),
                                    [&](const DtypeInfo& d) { return d.name == entry.dtype; });
    if (known == std::end(kDtypes)) {
      where(fmt::format("unknown dtype {}; expected one of BOOL, U8, I32, I64, F16, BF16, F32, F64",
                        excerpt(entry.dtype)));
    }
    t.dtype = known->dtype;
    t.shape = std::move(entry.shape);
    const std::string shape = joined_dims(t.shape);
    if (!numel_fits(t.shape)) {
      where(fmt::format("shape [{}] has more elements than int64 can count", shape));
    }
    const std::uint64_t begin = entry.begin, end = entry.end;
    if (begin > end || end > buffer) {
      where(
          fmt::format("data_offsets [{}, {}] out of range; expected begin <= end <= {} (the "
                      "data buffer size)",
                      begin, end, buffer));
    }
    std::uint64_t expected = 0;
    if (!byte_count(t.shape, dtype_size(t.dtype), expected)) {
      where(
          fmt::format("shape [{}] has {} elements of {} bytes ({}): more bytes than a file can "
                      "hold; data_offsets [{}, {}] span {} bytes",
                      shape, t.numel(), dtype_size(t.dtype), entry.dtype, begin, end, end - begin));
    }
    if (expected != end - begin) {
      where(fmt::format("{} bytes for dtype {} and shape [{}]; expected {}", end - begin,
                        entry.dtype, shape, expected));
    }
    t.data.assign(data + begin, data + end);
    const auto [it, inserted] = file.tensors.emplace(std::move(entry.name), std::move(t));
    if (!inserted) malformed(source, "internal error: repeated name after the header check");
    spans.push_back({begin, end, &it->first});
  }
  // The entries must tile the buffer: no overlap, no gap, nothing trailing.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t at = 0;
  for (const auto& s : spans) {
    if (s.begin != at) {
      malformed(source, fmt::format("tensor {} starts at byte {}; expected {} (tensors must "
                                    "not overlap or leave gaps)",
                                    excerpt(*s.name), s.begin, at));
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

File load(const std::filesystem::path& path, std::uint64_t max_bytes) {
  const std::string bytes = read_file(path, max_bytes);
  return parse(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())), path.string());
}

}  // namespace bnorm::safetensors
