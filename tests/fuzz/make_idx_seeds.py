#!/usr/bin/python3
"""Writes the seed corpora for the IDX reader and its gzip layer (tests/fuzz/corpus/{idx,gzip}/seeds/):
small valid IDX files (the format of MNIST and Fashion-MNIST: two zero bytes, a type code, the number
of dimensions, big-endian 32-bit dimensions, big-endian data) and the same files gzip-compressed, as
the datasets ship them. Deterministic (gzip mtime 0). Usage: tests/fuzz/make_idx_seeds.py"""
import gzip
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
TYPES = {"u8": (0x08, "B"), "i8": (0x09, "b"), "i16": (0x0B, "h"), "i32": (0x0C, "i"),
         "f32": (0x0D, "f"), "f64": (0x0E, "d")}


def idx(kind, dims, values):
    code, fmt = TYPES[kind]
    count = 1
    for d in dims:
        count *= d
    assert len(values) == count
    head = bytes([0, 0, code, len(dims)]) + struct.pack(">%dI" % len(dims), *dims)
    return head + struct.pack(">%d%s" % (count, fmt), *values)


SEEDS = {
    "labels_u8": idx("u8", [10], list(range(10))),
    "images_u8": idx("u8", [3, 4, 4], [(i * 37) % 256 for i in range(48)]),
    "empty_images_u8": idx("u8", [0, 28, 28], []),
    "one_image_28x28": idx("u8", [1, 28, 28], [i % 256 for i in range(784)]),
    "matrix_f32": idx("f32", [2, 2], [1.0, -2.5, 3.25, 0.0]),
    "vector_i32": idx("i32", [3], [-1, 0, 2**31 - 1]),
    "vector_f64": idx("f64", [2], [3.141592653589793, -0.0]),
    "vector_i16": idx("i16", [2], [-32768, 32767]),
    "vector_i8": idx("i8", [2], [-128, 127]),
}

for name, directory in (("idx", "idx"), ("gzip", "gzip")):
    os.makedirs(os.path.join(HERE, "corpus", directory, "seeds"), exist_ok=True)
    os.makedirs(os.path.join(HERE, "corpus", directory, "regressions"), exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(HERE, "corpus", "idx", "seeds", name + ".idx"), "wb") as f:
        f.write(data)
    with open(os.path.join(HERE, "corpus", "gzip", "seeds", name + ".idx.gz"), "wb") as f:
        f.write(gzip.compress(data, mtime=0))
# gzip specifics: two members back to back (gzip -c a b > c), and an empty member.
with open(os.path.join(HERE, "corpus", "gzip", "seeds", "two_members.gz"), "wb") as f:
    f.write(gzip.compress(SEEDS["labels_u8"], mtime=0) + gzip.compress(SEEDS["vector_i8"], mtime=0))
with open(os.path.join(HERE, "corpus", "gzip", "seeds", "empty.gz"), "wb") as f:
    f.write(gzip.compress(b"", mtime=0))
# Regressions written to probe limits (the replay needs regressions/ to exist in a fresh clone).
with open(os.path.join(HERE, "corpus", "idx", "regressions", "dims_overflow_size_t"), "wb") as f:
    f.write(bytes([0, 0, 0x0D, 4]) + struct.pack(">4I", 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 2))
with open(os.path.join(HERE, "corpus", "idx", "regressions", "truncated_data"), "wb") as f:
    f.write(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 1000) + b"abc")
with open(os.path.join(HERE, "corpus", "gzip", "regressions", "gzip_bomb_header_only"), "wb") as f:
    f.write(gzip.compress(b"\0" * (1 << 20), mtime=0))
with open(os.path.join(HERE, "corpus", "gzip", "regressions", "truncated_member"), "wb") as f:
    f.write(gzip.compress(SEEDS["images_u8"], mtime=0)[:-5])
# Issue 13, finding 8: labels declaring the whole 1 GiB cap, a trailer whose ISIZE agrees, and
# 1,000 real bytes (the reader allocated the GiB before inflating).
bomb = bytearray(gzip.compress(bytes([0, 0, 0x08, 1]) + struct.pack(">I", (1 << 30) - 8) +
                               bytes(1000), mtime=0))
bomb[-4:] = struct.pack("<I", 1 << 30)
with open(os.path.join(HERE, "corpus", "gzip", "regressions", "forged_isize_at_the_cap"), "wb") as f:
    f.write(bytes(bomb))
print("wrote %d IDX seeds and their gzip twins" % len(SEEDS))
