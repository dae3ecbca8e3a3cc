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
