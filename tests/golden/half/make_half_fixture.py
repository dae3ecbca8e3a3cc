#!/usr/bin/python3
"""PyTorch's float32 <-> bfloat16 / float16 conversions, as the oracle of bnorm's 16-bit types.

Run with Debian's Python (the one that has torch): /usr/bin/python3 make_half_fixture.py
It takes a few minutes (it converts all 2^32 float bit patterns twice). The tests read
conversions.txt and never need torch. Fixture format version: 1 (the "format" line).

conversions.txt holds
  format 1
  torch <version>
  narrow_runs bf16 <count> <hash>   PyTorch's float32 -> bfloat16 results for all 2^32 float32 bit
  narrow_runs fp16 <count> <hash>   patterns i, as runs: the i where the result differs from that
                                    of i - 1 (and i = 0), with their results (NaN inputs: bnorm's
                                    canonical NaN); count of runs and hash of the list
  widen_hash bf16 <hash>            the hash of PyTorch's 16-bit -> float32 results for all 65,536
  widen_hash fp16 <hash>            16-bit patterns (NaNs included: its widening is bitwise defined)
  <float32 bits> <bf16 bits> <fp16 bits>   one line per boundary-class float (hex), PyTorch's
                                           results, for readable failures
Hashes are sum mix64(key) mod 2^64 over the list, key = (i << 16) | result for runs and
(pattern << 32) | float bits for widening, mix64 being splitmix64's finalizer: any change in the
list changes the sum except with probability 2^-64. Every changed result changes the run list,
and the run list is 2^16 times shorter than the results, so it is cheap to hash in numpy.
NaN results are replaced by bnorm's canonical quiet NaN (0x7fc0, 0x7e00) before the comparison:
PyTorch's own NaN results differ between its scalar and vector paths (bf16: 0x7fc0 or 0xffff;
fp16 keeps the sign).

numpy's float32 -> float16 cast (round to nearest even, subnormals kept) is checked equal to
PyTorch's on the boundary floats and on every 61st float, as a second, independent peer (numpy's
cast is too slow to sweep all 2^32 floats on a shared machine).
"""
import os

import numpy as np
import torch

FORMAT = "1"
HERE = os.path.dirname(os.path.abspath(__file__))
CHUNK = 1 << 24
CANONICAL = {"bf16": 0x7FC0, "fp16": 0x7E00}
TORCH_DTYPE = {"bf16": torch.bfloat16, "fp16": torch.float16}


def mix64(z):
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def narrow(bits, kind):
    """torch's 16-bit result for float32 bit patterns `bits` (uint32), NaN -> canonical."""
    f = torch.from_numpy(bits.view(np.float32))
    out = f.to(TORCH_DTYPE[kind]).view(torch.int16).numpy().view(np.uint16).copy()
    out[np.isnan(bits.view(np.float32))] = CANONICAL[kind]
    return out


def nan_ranges(start, stop):
    """Index ranges within [start, stop) of float bit patterns that are NaN."""
    for lo, hi in ((0x7F800001, 0x80000000), (0xFF800001, 0x100000000)):
        a, b = max(lo, start), min(hi, stop)
        if a < b:
            yield a - start, b - start


def narrow_runs():
    counts = {"bf16": 0, "fp16": 0}
    sums = {"bf16": 0, "fp16": 0}
    previous = {"bf16": None, "fp16": None}
    for start in range(0, 1 << 32, CHUNK):
        floats = np.arange(start, start + CHUNK, dtype=np.uint32)
        x = torch.from_numpy(floats.view(np.float32))
        for kind in ("bf16", "fp16"):
            out = x.to(TORCH_DTYPE[kind]).view(torch.int16).numpy().view(np.uint16).copy()
            for a, b in nan_ranges(start, start + CHUNK):
                out[a:b] = CANONICAL[kind]
            starts = np.flatnonzero(np.diff(out)) + 1
            if previous[kind] is None or previous[kind] != out[0]:
                starts = np.concatenate(([0], starts))
            previous[kind] = out[-1]
            keys = ((starts.astype(np.uint64) + np.uint64(start)) << np.uint64(16)) | \
                out[starts].astype(np.uint64)
            counts[kind] += len(starts)
            sums[kind] = (sums[kind] + int(mix64(keys).sum(dtype=np.uint64))) % (1 << 64)
    return counts, sums


def check_numpy(floats, fp16):
    """numpy's cast equals torch's on every non-NaN float of `floats`."""
    finite = ~np.isnan(floats.view(np.float32))
    with np.errstate(over="ignore"):
        ref = floats.view(np.float32).astype(np.float16).view(np.uint16)
    bad = np.nonzero(finite & (ref != fp16))[0]
    assert bad.size == 0, f"numpy and torch differ at {floats[bad[0]]:#x}"


def widen_hashes():
    patterns = np.arange(1 << 16, dtype=np.uint64)
    sums = {}
    for kind in ("bf16", "fp16"):
        h = torch.from_numpy(patterns.astype(np.uint16).view(np.int16)).view(TORCH_DTYPE[kind])
        out = h.float().numpy().view(np.uint32).astype(np.uint64)
        sums[kind] = int(mix64((patterns << np.uint64(32)) | out).sum(dtype=np.uint64))
    return sums


def boundary_floats():
    """Floats next to every rounding decision of both formats, plus random ones."""
    values = set()
    lows = [0x0000, 0x0001, 0x0FFF, 0x1000, 0x1001, 0x1FFF, 0x2000, 0x2001, 0x3000, 0x7FFF,
            0x8000, 0x8001, 0xA000, 0xFFFF]
    rng = np.random.default_rng(15)
    for sign in (0, 1):
        for exponent in list(range(0, 6)) + list(range(98, 116)) + list(range(124, 131)) + \
                list(range(140, 145)) + list(range(250, 256)):
            for high in (0x00, 0x01, 0x02, 0x3F, 0x40, 0x7E, 0x7F):
                for low in lows:
                    values.add((sign << 31) | (exponent << 23) | (high << 16) | low)
        # fp16 subnormal ties at every bit position: mantissa t-1, t, t+1 with t = 1 << k.
        for exponent in range(101, 114):
            for k in range(23):
                for m in ((1 << k) - 1, 1 << k, (1 << k) + 1, (3 << k) & 0x7FFFFF):
                    values.add((sign << 31) | (exponent << 23) | (m & 0x7FFFFF))
    values.update(int(v) for v in rng.integers(0, 1 << 32, size=2000, dtype=np.uint64))
    return np.array(sorted(values), dtype=np.uint32)


def main():
    torch.set_num_threads(os.cpu_count() or 1)
    lines = [f"format {FORMAT}", f"torch {torch.__version__}"]
    counts, sums = narrow_runs()
    widen_sums = widen_hashes()
    for kind in ("bf16", "fp16"):
        lines.append(f"narrow_runs {kind} {counts[kind]} {sums[kind]:016x}")
    for kind in ("bf16", "fp16"):
        lines.append(f"widen_hash {kind} {widen_sums[kind]:016x}")
    strided = np.arange(0, 1 << 32, 61, dtype=np.uint64).astype(np.uint32)
    check_numpy(strided, narrow(strided, "fp16"))
    floats = boundary_floats()
    bf16 = narrow(floats, "bf16")
    fp16 = narrow(floats, "fp16")
    check_numpy(floats, fp16)
    for f, b, h in zip(floats, bf16, fp16):
        lines.append(f"{int(f):08x} {int(b):04x} {int(h):04x}")
    with open(os.path.join(HERE, "conversions.txt"), "w") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
