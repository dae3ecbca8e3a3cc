#!/usr/bin/env python3
"""Writes the committed malformed safetensors files that tests/unit/safetensors_test.cpp and
tests/unit/batch_norm_save_load_test.cpp read, one file per failure category.

Needs only the Python standard library. Run from anywhere: python3 make_malformed.py
Format of the valid files: 8-byte little-endian header length, JSON header, data buffer
(https://github.com/huggingface/safetensors). Format version of this fixture set: 1.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def image(header, data, header_text=None):
    text = header_text if header_text is not None else json.dumps(header, separators=(",", ":"))
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw + data


def f32(*values):
    return struct.pack("<%df" % len(values), *values)


def f64(*values):
    return struct.pack("<%dd" % len(values), *values)


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def write(name, content):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(content)


three = f32(1.0, 2.0, 3.0)
ok_header = {"__metadata__": {"bnorm.fixture": "1"}, "a": entry("F32", [3], 0, 12)}

# ---- container-level categories (safetensors::parse) ----
write("valid.safetensors", image(ok_header, three))
write("truncated_length.safetensors", b"\x10\x00\x00\x00\x00")  # 5 of the 8 length bytes
write("truncated_header.safetensors", struct.pack("<Q", 200) + b'{"a":')
write("truncated_data.safetensors", image(ok_header, three[:8]))
write("header_too_large.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
write("bad_json.safetensors", image(None, b"", header_text='{"a": {"dtype": "F32",'))
write("json_not_object.safetensors", image(None, b"", header_text="[1, 2, 3]"))
write("duplicate_key.safetensors",
      image(None, f32(1.0, 2.0),
            header_text='{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                        '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'))
write("offsets_out_of_range.safetensors", image({"a": entry("F32", [3], 0, 16)}, three))
write("offsets_reversed.safetensors", image({"a": entry("F32", [0], 8, 4)}, three))
write("dtype_shape_mismatch.safetensors", image({"a": entry("F32", [4], 0, 12)}, three))
write("unknown_dtype.safetensors", image({"a": entry("F31", [3], 0, 12)}, three))
write("negative_shape.safetensors", image({"a": entry("F32", [-3], 0, 12)}, three))
write("overlap.safetensors",
      image({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}, three))
write("gap.safetensors", image({"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)}, three))
write("trailing_bytes.safetensors", image({"a": entry("F32", [2], 0, 8)}, three))
write("metadata_not_string.safetensors",
      image({"__metadata__": {"bnorm.format": 1}, "a": entry("F32", [3], 0, 12)}, three))
write("missing_offsets.safetensors", image({"a": {"dtype": "F32", "shape": [3]}}, three))

# ---- layer-level categories (BatchNorm::load of a 3-channel float layer) ----
def layer_file(tensors, metadata=None):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = entry(dtype, shape, len(data), len(data) + len(raw))
        data += raw
    return image(header, data)


keras_meta = {"bnorm.format": "1", "bnorm.momentum_convention": "keras",
              "bnorm.moving_variance": "biased"}
full = [("gamma", "F32", [3], f32(1, 2, 3)), ("beta", "F32", [3], f32(0, 0, 0)),
        ("moving_mean", "F32", [3], f32(0, 1, 2)), ("moving_variance", "F32", [3], f32(1, 1, 1))]
write("layer_wrong_dtype.safetensors",
      layer_file([("gamma", "F64", [3], f64(1, 2, 3))] + full[1:], keras_meta))
write("layer_wrong_shape.safetensors",
      layer_file([("gamma", "F32", [4], f32(1, 2, 3, 4))] + full[1:], keras_meta))
write("layer_missing_tensor.safetensors", layer_file(full[:3], keras_meta))
write("layer_future_format.safetensors", layer_file(full, dict(keras_meta, **{"bnorm.format": "2"})))
write("layer_pytorch_convention.safetensors",
      layer_file(full, dict(keras_meta, **{"bnorm.momentum_convention": "pytorch"})))
write("layer_unexpected_tensor.safetensors",
      layer_file(full + [("renorm_mean", "F32", [3], f32(0, 0, 0))], keras_meta))

# ---- hostile files (issue 13): each was accepted, crashed or misreported before ----
valid_text = json.dumps(ok_header, separators=(",", ":"))
# A header padded with NUL bytes instead of spaces, and a valid object followed by NUL and junk
# (the JSON library stopped at the first NUL).
write("nul_padding.safetensors", image(None, three, header_text=valid_text + "\0" * 6))
write("nul_then_junk.safetensors", image(None, three, header_text=valid_text + '\0{"junk": ['))
# Padding that is JSON whitespace but not the format's spaces.
write("newline_padding.safetensors", image(None, three, header_text=valid_text + "\n   "))
# A key repeated inside one entry (the last value won), and inside __metadata__.
write("duplicate_key_in_entry.safetensors",
      image(None, three, header_text='{"a":{"dtype":"F64","dtype":"F32","shape":[3],'
                                     '"data_offsets":[0,12]}}'))
write("duplicate_metadata_key.safetensors",
      image(None, three, header_text='{"__metadata__":{"k":"1","k":"2"},'
                                     '"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}'))
# One level deeper than the format (the 70,000-level version that overflowed the stack is
# generated by the unit test).
write("nesting_too_deep.safetensors",
      image(None, three, header_text='{"a":{"dtype":"F32","shape":[[3]],"data_offsets":[0,12]}}'))
# 2^62 F64 elements: the element count fits int64, the byte count does not fit uint64 (the
# message said "0 bytes ...; expected 0").
write("shape_bytes_overflow.safetensors", image({"a": entry("F64", [1 << 62], 0, 0)}, b""))
# A BatchNorm file mixing Keras and PyTorch names (reported as "no tensor 'beta'").
write("layer_mixed_names.safetensors",
      layer_file([full[0], ("bias", "F32", [3], f32(0, 0, 0))] + full[2:], keras_meta))
