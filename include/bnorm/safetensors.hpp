// safetensors: the tensor file format that PyTorch, Keras, JAX and others read.
//
// Layout: 8 bytes little-endian header length N | N bytes of JSON header | data buffer.
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// into the data buffer) and may hold "__metadata__": {string: string}.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bnorm::safetensors {

enum class Dtype { kBool, kU8, kI32, kI64, kF16, kBF16, kF32, kF64 };

[[nodiscard]] std::size_t dtype_size(Dtype dtype);
[[nodiscard]] std::string_view dtype_name(Dtype dtype);  // "F32", "I64", ...

template <class T>
constexpr Dtype dtype_of();
template <>
constexpr Dtype dtype_of<float>() {
  return Dtype::kF32;
}
template <>
constexpr Dtype dtype_of<double>() {
  return Dtype::kF64;
}
template <>
constexpr Dtype dtype_of<std::int64_t>() {
  return Dtype::kI64;
}
template <>
constexpr Dtype dtype_of<std::int32_t>() {
  return Dtype::kI32;
}
template <>
constexpr Dtype dtype_of<std::uint8_t>() {
  return Dtype::kU8;
}

// A tensor to be written: a view of caller-owned data.
struct TensorRef {
  std::string name;
  Dtype dtype = Dtype::kF32;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> data;

  template <class T>
  static TensorRef of(std::string name, std::span<const T> values,
                      std::vector<std::int64_t> shape) {
    return {std::move(name), dtype_of<T>(), std::move(shape), std::as_bytes(values)};
  }
  // A 1-D tensor.
  template <class T>
  static TensorRef of(std::string name, std::span<const T> values) {
    return of<T>(std::move(name), values, {static_cast<std::int64_t>(values.size())});
  }
};

// A tensor read from a file (owns its bytes).
struct Tensor {
  Dtype dtype = Dtype::kF32;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> data;

  [[nodiscard]] std::int64_t numel() const;
  // The values as T. Throws bnorm::Error naming `what` if the dtype is not T's.
  template <class T>
  [[nodiscard]] std::vector<T> values(std::string_view what) const;
};

struct File {
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor> tensors;

  [[nodiscard]] bool contains(const std::string& name) const { return tensors.count(name) != 0; }
  // The tensor `name`, checked to have this dtype and shape; throws bnorm::Error naming the
  // source, the tensor, and the expected and actual dtype or shape otherwise.
  [[nodiscard]] const Tensor& expect(const std::string& name, Dtype dtype,
                                     std::span<const std::int64_t> shape) const;
  std::string source;  // the path or name it was parsed from, for messages
};

// Serializes tensors (in the given order) and metadata. Throws bnorm::Error for a tensor whose
// byte count does not match its dtype and shape, or for a duplicate name.
[[nodiscard]] std::vector<std::byte> serialize(std::span<const TensorRef> tensors,
                                               const std::map<std::string, std::string>& metadata);
// serialize + write_file_atomically.
void save(const std::filesystem::path& path, std::span<const TensorRef> tensors,
          const std::map<std::string, std::string>& metadata);

// The largest header accepted: larger ones are rejected before any allocation.
inline constexpr std::uint64_t kMaxHeaderBytes = std::uint64_t{100} << 20;

// The largest file load() reads by default; larger ones are rejected before any allocation.
inline constexpr std::uint64_t kMaxFileBytes = std::uint64_t{64} << 30;

// Parses and validates a whole file image: header length within the file and <= kMaxHeaderBytes,
// the header strict JSON (no NUL byte, only spaces after the closing brace, nesting no deeper
// than the format's 3 levels, no key repeated in any object), every entry with a known dtype,
// non-negative shape, offsets in range, byte count == numel * dtype size, entries not
// overlapping and covering the buffer exactly. Time O(n log k) for n bytes with k tensors,
// bounded stack for any input. Throws bnorm::Error whose message names `source` and the first
// problem found (quoting at most a bounded excerpt of any name or value from the file).
[[nodiscard]] File parse(std::span<const std::byte> bytes, std::string_view source);
// read_file(path, max_bytes) + parse.
[[nodiscard]] File load(const std::filesystem::path& path, std::uint64_t max_bytes = kMaxFileBytes);

}  // namespace bnorm::safetensors
