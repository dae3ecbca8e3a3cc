// The header is read with nlohmann-json's SAX interface: its parser is iterative (an explicit
// stack of open containers, no recursion), lexes each byte once, validates UTF-8 and escapes,
// and lets the handler stop the parse at any event. The handler below keeps one frame per open
// container, refuses a fourth level in start_object/start_array (before the parser goes deeper),
// checks every object's keys against a per-object set, and builds the entries directly: no DOM,
// so nothing is ever serialized back (a DOM's dump() is recursive) and no event rescans input.
// The library treats a NUL byte as the end of input, and accepts any JSON whitespace after the
// value: both are checked here, before and after the parse.
#include "io/safetensors_header.hpp"

#include <fmt/format.h>

#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "bnorm/error.hpp"
#include "io/message.hpp"

namespace bnorm::safetensors::detail {
namespace {

using json = nlohmann::json;

enum class Role { kTop, kEntry, kMetadata, kShape, kOffsets, kIgnored };

struct Frame {
  Role role;
  std::set<std::string> keys;        // objects: keys seen so far
  const std::string* key = nullptr;  // objects: the current key (a node of `keys`)
  std::size_t items = 0;             // arrays: values seen so far
};

// A scalar as the SAX events deliver it.
struct Scalar {
  enum Kind { kString, kUnsigned, kOther } kind;
  std::string* text = nullptr;  // kString
  std::uint64_t number = 0;     // kUnsigned
  std::string shown;            // for messages (bounded)
};

class Handler final : public nlohmann::json_sax<json> {
 public:
  Header header;
  std::string error;  // the first problem; the parse stops there

  bool null() override { return value({Scalar::kOther, nullptr, 0, "null"}); }
  bool boolean(bool v) override {
    return value({Scalar::kOther, nullptr, 0, v ? "true" : "false"});
  }
  bool number_integer(number_integer_t v) override {
    return value({Scalar::kOther, nullptr, 0, std::to_string(v)});
  }
  bool number_unsigned(number_unsigned_t v) override {
    return value({Scalar::kUnsigned, nullptr, v, std::to_string(v)});
  }
  bool number_float(number_float_t /*v*/, const string_t& text) override {
    return value({Scalar::kOther, nullptr, 0, excerpt(text, 32)});
  }
  bool string(string_t& v) override { return value({Scalar::kString, &v, 0, excerpt(v)}); }
  bool binary(binary_t& /*v*/) override {  // not produced by JSON text
    return value({Scalar::kOther, nullptr, 0, "binary"});
  }
  bool start_object(std::size_t /*elements*/) override { return start(true); }
  bool start_array(std::size_t /*elements*/) override { return start(false); }
  bool key(string_t& k) override;
  bool end_object() override;
  bool end_array() override;
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& e) override {
    // e.what() ends with the last token read, which may be megabytes: excerpt() bounds it.
    return fail(fmt::format("bad JSON header at byte {}: {}", position, excerpt(e.what(), 200)));
  }

 private:
  bool fail(std::string what) {
    if (error.empty()) error = std::move(what);
    return false;
  }
  [[nodiscard]] std::string tensor() const { return "tensor " + excerpt(entry_.name); }
  [[nodiscard]] std::string current_key() const {
    return excerpt(frames_.back().key != nullptr ? *frames_.back().key : std::string());
  }
  bool start(bool object);
  bool value(Scalar v);

  std::vector<Frame> frames_;
  HeaderEntry entry_;  // the entry being read (Role::kEntry)
  bool has_dtype_ = false, has_shape_ = false, has_offsets_ = false;
};

bool Handler::start(bool object) {
  const std::size_t depth = frames_.size();
  if (depth == kMaxHeaderDepth) {
    return fail(fmt::format(
        "{}: nesting deeper than {} levels; expected {{name: {{\"dtype\": ..., \"shape\": [...], "
        "\"data_offsets\": [...]}}}}",
        depth >= 2 && frames_[1].role == Role::kEntry ? tensor() : std::string("bad JSON header"),
        kMaxHeaderDepth));
  }
  Role role = Role::kIgnored;
  if (depth == 0) {
    if (!object) return fail("bad JSON header: expected an object, got an array");
    role = Role::kTop;
  } else if (frames_.back().role == Role::kTop) {
    const std::string& name = *frames_.back().key;
    if (name == "__metadata__") {
      if (!object) return fail("__metadata__ is not an object of strings");
      role = Role::kMetadata;
    } else {
      if (!object) return fail(fmt::format("tensor {}: entry is not an object", excerpt(name)));
      role = Role::kEntry;
      entry_ = HeaderEntry{name, {}, {}, 0, 0};
      has_dtype_ = has_shape_ = has_offsets_ = false;
    }
  } else if (frames_.back().role == Role::kMetadata) {
    return fail(fmt::format("__metadata__[{}] is not a string", current_key()));
  } else {  // the value of a key of an entry
    const std::string& k = *frames_.back().key;
    if (k == "dtype") return fail(tensor() + ": 'dtype' is not a string; expected e.g. \"F32\"");
    if (k == "shape" || k == "data_offsets") {
      if (object) {
        return fail(
            fmt::format("{}: '{}' is an object; expected an array of integers >= 0", tensor(), k));
      }
      role = k == "shape" ? Role::kShape : Role::kOffsets;
      (k == "shape" ? has_shape_ : has_offsets_) = true;
    }
  }
  frames_.push_back(Frame{role, {}, nullptr, 0});
  return true;
}

bool Handler::key(string_t& k) {
  Frame& f = frames_.back();
  const auto [it, inserted] = f.keys.insert(std::move(k));
  if (!inserted) {
    switch (f.role) {
      case Role::kTop:
        return fail(fmt::format(
            "bad JSON header: key {} appears more than once; expected unique tensor names",
            excerpt(*it)));
      case Role::kMetadata:
        return fail(fmt::format("__metadata__: key {} appears more than once; expected unique keys",
                                excerpt(*it)));
      default:
        return fail(fmt::format("{}: key {} appears more than once; expected each key once",
                                tensor(), excerpt(*it)));
    }
  }
  f.key = &*it;
  return true;
}

bool Handler::value(Scalar v) {
  if (frames_.empty()) return fail("bad JSON header: expected an object, got " + v.shown);
  Frame& f = frames_.back();
  ++f.items;
  switch (f.role) {
    case Role::kTop:
      if (*f.key == "__metadata__") return fail("__metadata__ is not an object of strings");
      return fail(fmt::format("tensor {}: entry is not an object", excerpt(*f.key)));
    case Role::kMetadata:
      if (v.kind != Scalar::kString) {
        return fail(fmt::format("__metadata__[{}] is not a string", current_key()));
      }
      header.metadata.emplace(*f.key, std::move(*v.text));
      return true;
    case Role::kEntry:
      if (*f.key == "dtype") {
        if (v.kind != Scalar::kString) {
          return fail(tensor() + ": 'dtype' is " + v.shown + "; expected a string such as \"F32\"");
        }
        entry_.dtype = std::move(*v.text);
        has_dtype_ = true;
      } else if (*f.key == "shape" || *f.key == "data_offsets") {
        return fail(fmt::format("{}: '{}' is {}; expected an array of integers >= 0", tensor(),
                                *f.key, v.shown));
      }
      return true;  // keys the format does not define are ignored, as the reference does
    case Role::kShape:
      if (v.kind != Scalar::kUnsigned ||
          v.number > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return fail(
            fmt::format("{}: shape entry {} is {}; expected an integer >= 0 that fits int64",
                        tensor(), f.items - 1, v.shown));
      }
      entry_.shape.push_back(static_cast<std::int64_t>(v.number));
      return true;
    case Role::kOffsets:
      if (v.kind != Scalar::kUnsigned) {
        return fail(
            fmt::format("{}: data_offsets must be integers >= 0; got {}", tensor(), v.shown));
      }
      if (f.items > 2) {
        return fail(tensor() + ": data_offsets has more than 2 entries; expected [begin, end]");
      }
      (f.items == 1 ? entry_.begin : entry_.end) = v.number;
      return true;
    case Role::kIgnored:
      return true;
  }
  return true;
}

bool Handler::end_object() {
  const Role role = frames_.back().role;
  frames_.pop_back();
  if (role == Role::kEntry) {
    if (!has_dtype_) return fail(tensor() + ": missing string 'dtype'");
    if (!has_shape_) return fail(tensor() + ": missing array 'shape'");
    if (!has_offsets_) return fail(tensor() + ": missing 'data_offsets' [begin, end]");
    header.entries.push_back(std::move(entry_));
  }
  return true;
}

bool Handler::end_array() {
  const Frame f = std::move(frames_.back());
  frames_.pop_back();
  if (f.role == Role::kOffsets && f.items != 2) {
    return fail(fmt::format("{}: missing 'data_offsets' [begin, end]: it has {} entries", tensor(),
                            f.items));
  }
  return true;
}

}  // namespace

Header parse_header(std::string_view text, std::string_view source) {
  const auto malformed = [&](std::string_view what) {
    throw Error(fmt::format("safetensors file '{}': {}", source, what));
  };
  // nlohmann's lexer reads '\0' as the end of input: "{}\0junk" would parse as "{}".
  if (const void* nul = std::memchr(text.data(), '\0', text.size()); nul != nullptr) {
    malformed(
        fmt::format("bad JSON header: NUL byte at byte {}; expected JSON text padded with "
                    "spaces",
                    static_cast<const char*>(nul) - text.data()));
  }
  // The format pads with spaces (0x20) only; other whitespace after the object is junk.
  const std::size_t end = text.find_last_not_of(' ');
  const std::string_view json_text = text.substr(0, end == std::string_view::npos ? 0 : end + 1);
  Handler handler;
  const bool ok = json::sax_parse(json_text.begin(), json_text.end(), &handler,
                                  json::input_format_t::json, /*strict=*/true);
  if (!ok) malformed(handler.error.empty() ? std::string("bad JSON header") : handler.error);
  // A successful parse of an object ends with '}' followed only by JSON whitespace.
  if (const std::size_t brace = json_text.find_last_of('}'); brace + 1 != json_text.size()) {
    malformed(
        fmt::format("bad JSON header: byte {} after the closing brace is {}; expected only "
                    "spaces as padding",
                    brace + 1, excerpt(json_text.substr(brace + 1, 1))));
  }
  return std::move(handler.header);
}

}  // namespace bnorm::safetensors::detail
