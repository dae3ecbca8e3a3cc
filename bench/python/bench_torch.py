#!/usr/bin/python3
"""bnorm.torch against torch.nn.BatchNorm*d, measured in one run (scripts/bench section 4).

1. Per call, forward + backward through autograd, 1 and 2 threads: 64x100 (BatchNorm1d) and
   32x64x56x56 (BatchNorm2d, contiguous and channels_last). Routes: torch, bnorm's operator
   (the drop-in modules' path) and, for 64x100, bnorm's NumPy-module fallback Function.
2. End to end, a training step (SGD, cross-entropy, CPU) of torchvision models (or ResNet-18
   written out when torchvision is missing) with torch's BN and after bnorm.torch.convert, 1 and
   2 threads; torch's profiler gives the share of the step that BN takes with torch's BN.
3. SyncBatchNorm with 2 gloo processes against an unsynchronized step plus one all-reduce.

PyTorch runs in its best configuration: BLAS through Debian's alternatives (OpenBLAS when
libopenblas0-pthread is installed; the script reports which library is loaded) and the fastest
ATEN_CPU_CAPABILITY, chosen by a probe that times torch's own BN and a convolution under each.
Times are medians of interleaved repetitions; the machine may be shared, so treat differences
under ~5% as noise.

Usage: bench/python/bench_torch.py [--quick] [--models resnet18,resnet50,mobilenet_v2]
                                   [--sections percall,e2e,sync] [--md docs/benchmarks-python.md]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

CAPABILITIES = ("avx2", "avx512")


def probe_capability():
    """Times torch's BN fwd+bwd and a 3x3 convolution under each ATEN_CPU_CAPABILITY."""
    code = (
        "import time, torch\n"
        "torch.set_num_threads(1)\n"
        "x = torch.randn(16, 64, 56, 56, requires_grad=True)\n"
        "bn = torch.nn.BatchNorm2d(64); conv = torch.nn.Conv2d(64, 64, 3, padding=1)\n"
        "def step():\n"
        "    y = conv(bn(x)); y.sum().backward()\n"
        "step()\n"
        "best = 1e9\n"
        "for _ in range(5):\n"
        "    t = time.perf_counter(); step(); best = min(best, time.perf_counter() - t)\n"
        "import re\n"
        "print(best, re.search(r'CPU capability usage: (\\S+)', torch.__config__.show())[1])\n")
    results = {}
    for cap in CAPABILITIES:
        env = dict(os.environ, ATEN_CPU_CAPABILITY=cap)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        results[cap] = (float(out[0]), out[1])
    best = min(results, key=lambda c: results[c][0])
    return best, results


def cpu_capability():
    import re

    import torch

    return re.search(r"CPU capability usage: (\S+)", torch.__config__.show())[1]


def blas_library():
    import torch

    a = torch.randn(64, 64)
    a @ a  # loads the BLAS
    with open("/proc/self/maps") as maps:
        libs = {line.split()[-1] for line in maps if "blas" in line.lower()}
    return ", ".join(sorted(os.path.basename(p) for p in libs)) or "none found"


# CPU time of the process next to wall time: on a shared machine other processes take the cores
# away for part of a wall-clock interval, which CPU time does not count (at 1 thread it is the
# time the computation itself took; at 2 threads it adds OpenMP's spin-waiting).
CPU_TIMES = {}


def timed(fn, reps):
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps, (time.process_time() - cpu) / reps


def interleaved(fns, reps, rounds):
    """Median over `rounds` of the mean wall time of `reps` calls, implementations interleaved.
    The medians of the CPU times go to CPU_TIMES[name]."""
    samples = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm up
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(timed(fn, reps))
    for name, s in samples.items():
        CPU_TIMES[name] = statistics.median(c for _, c in s)
    return {name: statistics.median(w for w, _ in s) for name, s in samples.items()}


def per_call_rows(quick):
    import torch

    import bnorm.torch as bt
    from bnorm._torch_numpy import numpy_batch_norm

    rows = []
    cases = [("64x100", (64, 100), torch.contiguous_format, 2000),
             ("32x64x56x56 NCHW", (32, 64, 56, 56), torch.contiguous_format, 3),
             ("32x64x56x56 channels_last", (32, 64, 56, 56), torch.channels_last, 3)]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for label, shape, fmt, reps in cases:
            channels = shape[1]
            torch_cls = torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d
            bnorm_cls = bt.BatchNorm1d if len(shape) == 2 else bt.BatchNorm2d
            x = torch.randn(shape).contiguous(memory_format=fmt).requires_grad_()
            dy = torch.randn(shape).contiguous(memory_format=fmt)
            ours, theirs = bnorm_cls(channels), torch_cls(channels)

            def run(m):
                return lambda: m(x).backward(dy)

            fns = {"torch": run(theirs), "bnorm": run(ours)}
            if len(shape) == 2:
                fns["bnorm NumPy Function"] = lambda: numpy_batch_norm(
                    x, ours.weight, ours.bias, ours.running_mean, ours.running_var, True, 0.1,
                    1e-5).backward(dy)
            t = interleaved(fns, reps=max(1, reps // (4 if quick else 1)),
                            rounds=3 if quick else 7)
            t["cpu speedup"] = CPU_TIMES["torch"] / CPU_TIMES["bnorm"]
            rows.append((label, threads, t))
    return rows


def resnet18_written_out():
    """torchvision's ResNet-18 (BasicBlock [2, 2, 2, 2]) when torchvision is not installed."""
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.down is None else self.down(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    return nn.Sequential(*layers)


def make_model(name):
    try:
        import torchvision

        return getattr(torchvision.models, name)(), "torchvision"
    except ImportError:
        if name != "resnet18":
            return None, None
        return resnet18_written_out(), "written out"


def bn_share(model, x, target):
    import torch
    import torch.nn.functional as F

    with torch.autograd.profiler.profile() as prof:
        F.cross_entropy(model(x), target).backward()
    total = sum(e.self_cpu_time_total for e in prof.function_events)
    bn = sum(e.self_cpu_time_total for e in prof.function_events
             if "batch_norm" in e.name)
    return bn / total


def end_to_end_rows(models, quick):
    import copy

    import torch
    import torch.nn.functional as F

    import bnorm.torch as bt

    rows = []
    batch = {"resnet18": 32, "resnet50": 16, "mobilenet_v2": 32}
    for name in models:
        model, source = make_model(name)
        if model is None:
            print(f"skipping {name}: torchvision is not installed")
            continue
        torch.manual_seed(0)
        n = batch.get(name, 16)
        x = torch.randn(n, 3, 112, 112)
        target = torch.randint(0, 1000, (n,))
        converted = bt.convert(copy.deepcopy(model))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            share = bn_share(model, x, target)

            def step(m, opt):
                def run():
                    opt.zero_grad()
                    F.cross_entropy(m(x), target).backward()
                    opt.step()
                return run

            opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
                    for k, m in (("torch", model), ("bnorm", converted))}
            t = interleaved({"torch": step(model, opts["torch"]),
                             "bnorm": step(converted, opts["bnorm"])},
                            reps=1, rounds=3 if quick else 7)
            t["cpu speedup"] = CPU_TIMES["torch"] / CPU_TIMES["bnorm"]
            rows.append((f"{name} b{n} 112x112 ({source})", threads, t, share))
    return rows


def _sync_worker(rank, init_file, out_file, quick):
    import torch
    import torch.distributed as dist

    import bnorm.torch as bt

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    rows = []
    for shape in ((16, 64, 56, 56), (16, 256, 14, 14)):
        channels = shape[1]
        x = torch.randn(shape, requires_grad=True)
        dy = torch.randn(shape)
        sync_bn, local_bn = bt.SyncBatchNorm(channels), bt.BatchNorm2d(channels)
        sums = torch.zeros(2 * channels, dtype=torch.float64)
        fns = {"sync": lambda: sync_bn(x).backward(dy),
               "local": lambda: local_bn(x).backward(dy),
               "allreduce": lambda: dist.all_reduce(sums)}
        t = interleaved(fns, reps=3 if quick else 10, rounds=5 if quick else 9)
        rows.append(("x".join(map(str, shape)), t))
    if rank == 0:
        torch.save(rows, out_file)
    dist.destroy_process_group()


def sync_rows(quick):
    """SyncBatchNorm fwd+bwd with 2 gloo processes (1 thread each) vs the same module's
    unsynchronized BN on the local batch plus one all-reduce of 2C doubles."""
    import tempfile

    import torch
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.pt")
        mp.spawn(_sync_worker, args=(os.path.join(tmp, "init"), out, quick), nprocs=2)
        return torch.load(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--models", default="resnet18,resnet50,mobilenet_v2")
    parser.add_argument("--md", default=None, help="also write the tables to this Markdown file")
    parser.add_argument("--sections", default="percall,e2e,sync",
                        help="which tables: percall, e2e, sync (comma-separated)")
    args = parser.parse_args()

    if "ATEN_CPU_CAPABILITY" not in os.environ:
        best, probes = probe_capability()
        print("ATEN_CPU_CAPABILITY probe (torch BN + 3x3 conv fwd+bwd, 16x64x56x56, 1 thread):")
        for cap, (seconds, used) in probes.items():
            print(f"  {cap}: {seconds * 1e3:.1f} ms (torch reports {used})")
        os.environ["ATEN_CPU_CAPABILITY"] = best
        os.execv(sys.executable, [sys.executable] + sys.argv)

    import torch

    import bnorm.torch as bt

    lines = []
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU")
    lines.append(f"Machine: {cpu}, {os.cpu_count()} cores (shared). torch {torch.__version__}, "
                 f"ATEN_CPU_CAPABILITY={os.environ['ATEN_CPU_CAPABILITY']} "
                 f"({cpu_capability()}), BLAS loaded: {blas_library()}; "
                 f"bnorm operator: {'yes' if bt.HAVE_OPERATOR else bt.OPERATOR_ERROR}. "
                 f"Load average at the start: {os.getloadavg()[0]:.1f}.")
    sections = set(args.sections.split(","))
    lines.append("")
    lines.append("### Per call, forward + backward through autograd")
    lines.append("")
    lines.append("| problem | threads | torch | bnorm.torch | speedup | speedup in CPU time | "
                 "NumPy Function |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for label, threads, t in per_call_rows(args.quick) if "percall" in sections else []:
        unit, scale = ("us", 1e6) if t["torch"] < 1e-3 else ("ms", 1e3)
        numpy_col = (f"{t['bnorm NumPy Function'] * scale:.1f} {unit}"
                     if "bnorm NumPy Function" in t else "")
        lines.append(f"| {label} | {threads} | {t['torch'] * scale:.1f} {unit} | "
                     f"{t['bnorm'] * scale:.1f} {unit} | {t['torch'] / t['bnorm']:.2f}x | "
                     f"{t['cpu speedup']:.2f}x | {numpy_col} |")
        print(lines[-1], flush=True)
    lines.append("")
    lines.append("### Training step (SGD, cross-entropy), torch BN vs bnorm.torch.convert(model)")
    lines.append("")
    lines.append("| model | threads | BN share (torch profile) | torch step | bnorm step | "
                 "speedup | speedup in CPU time |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    e2e = end_to_end_rows(args.models.split(","), args.quick) if "e2e" in sections else []
    for label, threads, t, share in e2e:
        lines.append(f"| {label} | {threads} | {share * 100:.1f}% | {t['torch'] * 1e3:.0f} ms | "
                     f"{t['bnorm'] * 1e3:.0f} ms | {t['torch'] / t['bnorm']:.3f}x | "
                     f"{t['cpu speedup']:.3f}x |")
        print(lines[-1], flush=True)
    lines.append("")
    lines.append("### SyncBatchNorm on CPU: 2 gloo processes, 1 thread each, fwd+bwd per rank")
    lines.append("")
    lines.append("| per-rank batch | synchronized | local BN | one all-reduce (2C doubles) | "
                 "sync / (local + all-reduce) |")
    lines.append("|---|---:|---:|---:|---:|")
    for label, t in sync_rows(args.quick) if "sync" in sections else []:
        lines.append(f"| {label} | {t['sync'] * 1e3:.2f} ms | {t['local'] * 1e3:.2f} ms | "
                     f"{t['allreduce'] * 1e6:.0f} us | "
                     f"{t['sync'] / (t['local'] + t['allreduce']):.2f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        tmp = args.md + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, args.md)


if __name__ == "__main__":
    main()
