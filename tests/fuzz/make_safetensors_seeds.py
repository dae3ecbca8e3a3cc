#!/usr/bin/python3
"""Writes the safetensors seed corpus (tests/fuzz/corpus/safetensors/seeds/): small valid files
in the layout of the format's reference implementation (8-byte little-endian header length,
JSON header padded with spaces to a multiple of 8, data buffer), covering every dtype, empty and
zero-size tensors, scalars, metadata, and a BatchNorm-like state file. Deterministic: rerunning
it rewrites the same bytes. Usage: tests/fuzz/make_safetensors_seeds.py"""
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors", "seeds")
SIZES = {"BOOL": 1, "U8": 1, "I32": 4, "I64": 8, "F16": 2, "BF16": 2, "F32": 4, "F64": 8}


def file_bytes(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, raw in tensors:
        count = 1
        for d in shape:
            count *= d
        assert len(raw) == count * SIZES[dtype], name
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


def f32(*values):
    return struct.pack("<%df" % len(values), *values)


def f64(*values):
    return struct.pack("<%dd" % len(values), *values)


SEEDS = {
    "empty_header": file_bytes([]),
    "metadata_only": file_bytes([], {"format": "bnorm.batch_norm", "version": "1"}),
    "one_f32": file_bytes([("x", "F32", [3], f32(1.0, -2.5, 3.25))]),
    "scalar_f64": file_bytes([("s", "F64", [], f64(3.141592653589793))]),
    "zero_size": file_bytes([("empty", "F32", [0, 4], b""), ("a", "U8", [2], b"\x01\x02")]),
    "every_dtype": file_bytes([
        ("bool", "BOOL", [2], b"\x00\x01"),
        ("u8", "U8", [3], b"\x00\x7f\xff"),
        ("i32", "I32", [2], struct.pack("<2i", -1, 2**31 - 1)),
        ("i64", "I64", [2], struct.pack("<2q", -(2**63), 2**63 - 1)),
        ("f16", "F16", [2], struct.pack("<2e", 1.0, -0.5)),
        ("bf16", "BF16", [1, 2], b"\x80\x3f\x00\xc0"),
        ("f32", "F32", [2, 1], f32(float("inf"), float("nan"))),
        ("f64", "F64", [1], f64(-0.0)),
    ]),
    "batch_norm_state": file_bytes([
        ("gamma", "F32", [4], f32(1, 1, 1, 1)),
        ("beta", "F32", [4], f32(0, 0, 0, 0)),
        ("moving_mean", "F32", [4], f32(0.1, 0.2, 0.3, 0.4)),
        ("moving_variance", "F32", [4], f32(1.1, 1.2, 1.3, 1.4)),
        ("batches_seen", "I64", [], struct.pack("<q", 12)),
    ], {"format": "bnorm.batch_norm", "version": "1", "axis": "1", "momentum": "0.99"}),
    "nchw_weights": file_bytes([("w", "F32", [2, 3, 2, 2], f32(*[i * 0.5 for i in range(24)]))]),
}

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
        f.write(data)
print("wrote %d seeds to %s" % (len(SEEDS), OUT))

# Hostile shapes (issue 13), all to be rejected or accepted quickly: deep nesting (in a shape, in
# an unknown key, in __metadata__, objects in objects), many entries, NUL bytes, non-space padding,
# repeated keys inside an entry. seeds/ holds the small ones (within scripts/fuzz's default
# -max_len of 4096, so that mutations start from them); regressions/ the full-size ones that the
# replay parses whole.
REGRESSIONS = os.path.join(os.path.dirname(OUT), "regressions")


def raw(text, data=b""):
    text = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(text)) + text + data


def many_entries(n):
    return raw("{" + ",".join('"t%07d":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}' % i
                              for i in range(n)) + "}")


valid = json.dumps({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                   separators=(",", ":"))
HOSTILE_SEEDS = {
    "deep_shape": raw('{"a":{"dtype":"F32","shape":' + "[" * 1900 + "]" * 1900 +
                      ',"data_offsets":[0,0]}}'),
    "deep_objects": raw('{"k":' * 600 + "0" + "}" * 600),
    "deep_metadata": raw('{"__metadata__":{"k":' + "[" * 1900 + "]" * 1900 + "}}"),
    "depth_3_unknown_keys": raw('{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0],'
                                '"x":{"y":1},"z":[1,"s",null]}}'),
    "many_entries": many_entries(60),
    "nul_padding": raw(valid + "\0" * 7, f32(1.0)),
    "nul_then_junk": raw(valid + '\0{"junk": [', f32(1.0)),
    "newline_padding": raw(valid + "\n  ", f32(1.0)),
    "duplicate_key_in_entry": raw('{"a":{"dtype":"F64","dtype":"F32","shape":[1],'
                                  '"data_offsets":[0,4]}}', f32(1.0)),
    "duplicate_metadata_key": raw('{"__metadata__":{"k":"1","k":"2"}}'),
    "shape_bytes_overflow": raw('{"a":{"dtype":"F64","shape":[4611686018427387904],'
                                '"data_offsets":[0,0]}}'),
}
HOSTILE_REGRESSIONS = {
    "deep_shape_70000": raw('{"a":{"dtype":"F32","shape":' + "[" * 70000 + "]" * 70000 +
                            ',"data_offsets":[0,0]}}'),
    "many_entries_2000": many_entries(2000),
    "long_name_64k": raw('{"' + "n" * 65536 + '":{"dtype":"F31","shape":[0],"data_offsets":[0,0]}}'),
}
for directory, files in ((OUT, HOSTILE_SEEDS), (REGRESSIONS, HOSTILE_REGRESSIONS)):
    os.makedirs(directory, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(directory, "hostile_" + name + ".safetensors"), "wb") as f:
            f.write(data)
print("wrote %d hostile seeds and %d hostile regressions" % (len(HOSTILE_SEEDS),
                                                             len(HOSTILE_REGRESSIONS)))
