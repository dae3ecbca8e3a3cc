#!/usr/bin/python3
"""Steps per second of the paper's MLP (784-100-100-100-10, sigmoid, batch 60, plain SGD) in
PyTorch, with and without batch norm before each sigmoid: the baseline for bnorm-train's engine.

Same network, same batch, same threads as bench/train/bnorm_train_bench; random data already in
memory so that only the training step is timed (the data loader is not what is compared).
Prints one JSON object per configuration: {"framework", "bn", "threads", "steps_per_second",
"capability", "blas"}: the CPU capability PyTorch's kernels dispatch to (ATEN_CPU_CAPABILITY; it
is read once per process, so bench/train/compare.sh runs this script once per capability) and the
BLAS that runs the Linear layers' GEMMs.
Usage: /usr/bin/python3 bench/baselines/torch_mlp_steps.py [--threads N] [--seconds S]
"""
import argparse
import ctypes
import json
import os
import re
import time

import torch


def config_value(pattern: str) -> str:
    match = re.search(pattern, torch.__config__.show())
    return match.group(1).strip() if match else "unknown"


def blas_info() -> str:
    """The BLAS PyTorch was built against and the one loaded at run time.

    Debian's PyTorch is built against the generic libblas.so.3 (BLAS_INFO=generic), which is
    whatever Debian's BLAS alternative selects: the reference BLAS (libblas3) or OpenBLAS
    (libopenblas0-pthread or -openmp) when installed, as a performance-minded user has it.
    """
    loaded = "none"
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if os.path.basename(path).startswith("libblas.so"):
                loaded = os.path.realpath(path)
                break
    info = f"BLAS_INFO={config_value(r'BLAS_INFO=([^,]*)')} (build); loaded {loaded}"
    try:
        lib = ctypes.CDLL(loaded)
        lib.openblas_get_config.restype = ctypes.c_char_p
        lib.openblas_get_corename.restype = ctypes.c_char_p
        info += (f" = OpenBLAS ({lib.openblas_get_config().decode().strip()}; core "
                 f"{lib.openblas_get_corename().decode()}; {lib.openblas_get_num_threads()} "
                 f"thread(s))")
    except (OSError, AttributeError):
        info += " (no OpenBLAS symbols: the reference BLAS)"
    return info


def make_model(bn: bool) -> torch.nn.Module:
    layers = []
    width = 784
    for _ in range(3):
        # BN before the sigmoid drops the Dense bias, as in the paper and in bnorm's MLP.
        layers.append(torch.nn.Linear(width, 100, bias=not bn))
        if bn:
            # PyTorch momentum 0.01 == Keras momentum 0.99; epsilon 1e-3 as bnorm's default.
            layers.append(torch.nn.BatchNorm1d(100, eps=1e-3, momentum=0.01))
        layers.append(torch.nn.Sigmoid())
        width = 100
    layers.append(torch.nn.Linear(width, 10))
    model = torch.nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    return model


def measure(bn: bool, seconds: float, batch: int) -> float:
    torch.manual_seed(1)
    model = make_model(bn)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    # A pool of batches in memory, cycled (like bnorm's bench).
    xs = torch.rand(64, batch, 784)
    ys = torch.randint(0, 10, (64, batch))

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xs[i % 64]), ys[i % 64])
        loss.backward()
        opt.step()

    for i in range(50):  # warm-up
        step(i)
    steps = 0
    start = time.perf_counter()
    while True:
        step(steps)
        steps += 1
        if steps % 50 == 0 and time.perf_counter() - start >= seconds:
            break
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    capability = config_value(r"CPU capability usage: (.*)")
    blas = blas_info()
    for bn in (False, True):
        sps = measure(bn, args.seconds, args.batch)
        print(json.dumps({"framework": f"pytorch {torch.__version__}", "bn": bn,
                          "threads": args.threads, "batch": args.batch,
                          "steps_per_second": round(sps, 1), "capability": capability,
                          "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", "unset"),
                          "blas": blas}), flush=True)


if __name__ == "__main__":
    main()
