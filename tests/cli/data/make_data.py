#!/usr/bin/env python3
"""Generates the committed IDX fixtures of the CLI and reader tests (run once; outputs are in git).

tiny/      a valid Fashion-MNIST subset: the first 300 training and 100 test images and labels,
           gzip-compressed like the real files (plain copies of the test split too, so both
           readers' paths are exercised).
malformed/ one file per way an IDX file can be wrong; each name says the case. The reader must
           reject each with a message naming the file, the field, the expected and actual value.

Usage: python3 tests/cli/data/make_data.py [/usr/share/datasets/fashion-mnist]
"""
import gzip
import os
import struct
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
HERE = os.path.dirname(os.path.abspath(__file__))


def read(name):
    with gzip.open(os.path.join(SRC, name), "rb") as f:
        return f.read()


def images(count, rows=28, cols=28, pixels=None, magic=(0, 0, 8, 3)):
    header = bytes(magic) + struct.pack(">III", count, rows, cols)
    return header + (pixels if pixels is not None else bytes(count * rows * cols))


def labels(values, magic=(0, 0, 8, 1), count=None):
    n = len(values) if count is None else count
    return bytes(magic) + struct.pack(">I", n) + bytes(values)


def write(path, data, compress):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if compress:
        # mtime=0: reproducible bytes.
        data = gzip.compress(data, compresslevel=9, mtime=0)
    with open(path, "wb") as f:
        f.write(data)


def tiny():
    tr_img, tr_lab = read("train-images-idx3-ubyte.gz"), read("train-labels-idx1-ubyte.gz")
    te_img, te_lab = read("t10k-images-idx3-ubyte.gz"), read("t10k-labels-idx1-ubyte.gz")
    n_train, n_test = 300, 100
    d = os.path.join(HERE, "tiny")
    write(f"{d}/train-images-idx3-ubyte.gz", images(n_train, pixels=tr_img[16:16 + n_train * 784]), True)
    write(f"{d}/train-labels-idx1-ubyte.gz", labels(tr_lab[8:8 + n_train]), True)
    write(f"{d}/t10k-images-idx3-ubyte", images(n_test, pixels=te_img[16:16 + n_test * 784]), False)
    write(f"{d}/t10k-labels-idx1-ubyte", labels(te_lab[8:8 + n_test]), False)


def malformed():
    d = os.path.join(HERE, "malformed")
    good = images(2, pixels=bytes(range(256)) * 6 + bytes(2 * 784 - 1536))
    cases = {
        # name: (bytes, gzip?)
        "short-header-images": (b"\x00\x00\x08", False),
        "bad-magic-images": (b"\x1f\x00" + good[2:], False),
        "bad-type-images": (images(2, magic=(0, 0, 0x0D, 3)), False),
        "bad-ndim-images": (images(2, magic=(0, 0, 8, 1)), False),
        "bad-rows-images": (images(2, rows=27), False),
        "bad-cols-images": (images(2, cols=29), False),
        "truncated-images": (good[:-10], False),
        "trailing-images": (good + b"\x00\x01", False),
        "huge-count-images": (images(0xFFFFFFFF, pixels=b""), False),
        "truncated-images.gz": (None, True),  # filled below
        "corrupt-images.gz": (None, True),
        "trailing-images.gz": (None, True),
        "isize-mismatch-images.gz": (None, True),
        "bad-ndim-labels": (labels([1, 2], magic=(0, 0, 8, 3)), False),
        "bad-label-labels": (labels([1, 10]), False),
    }
    for name, (data, compress) in cases.items():
        if data is not None:
            write(f"{d}/{name}", data, False)
    gz = gzip.compress(good, compresslevel=9, mtime=0)
    write(f"{d}/truncated-images.gz", gz[: len(gz) // 2] + gz[-8:], False)  # trailer kept
    corrupt = bytearray(gz)
    for i in range(12, 30):
        corrupt[i] ^= 0xA5
    write(f"{d}/corrupt-images.gz", bytes(corrupt), False)
    write(f"{d}/trailing-images.gz", gzip.compress(good + b"\x07", compresslevel=9, mtime=0), False)
    # A valid stream whose trailer lies about the size (CRC left as is: ISIZE is checked first).
    lie = bytearray(gz)
    lie[-4:] = struct.pack("<I", 12345)
    write(f"{d}/isize-mismatch-images.gz", bytes(lie), False)
    # Issue 13, finding 8: labels declaring exactly the 1 GiB cap, a trailer that agrees (ISIZE is
    # just 4 bytes), and 1,000 bytes of real data: the reader allocated the whole GiB first.
    declared = (1 << 30) - 8
    bomb = bytearray(gzip.compress(labels(bytes(1000), count=declared), compresslevel=9, mtime=0))
    bomb[-4:] = struct.pack("<I", 1 << 30)
    write(f"{d}/forged-isize-bomb-labels.gz", bytes(bomb), False)
    # A valid pair with a count mismatch for load_idx_dataset: 2 images, 3 labels.
    write(f"{d}/pair-count/train-images-idx3-ubyte", good, False)
    write(f"{d}/pair-count/train-labels-idx1-ubyte", labels([1, 2, 3]), False)
    write(f"{d}/pair-count/t10k-images-idx3-ubyte", good, False)
    write(f"{d}/pair-count/t10k-labels-idx1-ubyte", labels([1, 2]), False)


if __name__ == "__main__":
    tiny()
    malformed()
