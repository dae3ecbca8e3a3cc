#!/usr/bin/env bash
# Steps/s of the paper's MLP (batch 60, with and without BN): bnorm's engine vs PyTorch, same
# threads, one run. Prints a Markdown table (for docs/benchmarks.md) with the ratio.
#   bench/train/compare.sh BUILD_DIR [THREADS] [SECONDS]
# BUILD_DIR holds bnorm-train-bench (bench/train/bnorm-train-bench when built from the top-level
# project, or ./bnorm-train-bench for the standalone build of bench/train).
#
# PyTorch runs as a performance-minded user runs it: on the BLAS that Debian's alternative
# selects (OpenBLAS once libopenblas0-pthread is installed: scripts/bootstrap --bench), and at
# each CPU capability worth trying, one process each (PyTorch reads ATEN_CPU_CAPABILITY once):
# its own choice (unset) and, where the CPU has AVX-512, avx512 (PyTorch 1.13 does not pick it by
# itself). The faster of them per network is the figure compared; every run is listed below the
# table with its capability and BLAS.
#
# Both sides run without OMP_PROC_BIND/OMP_PLACES (scripts/bench exports them for bnorm-bench):
# with them, libgomp pins the process's first thread to one core when PyTorch loads, OpenBLAS
# (pthreads) then sees one CPU and runs every GEMM on one thread whatever THREADS says.
set -euo pipefail
unset OMP_PROC_BIND OMP_PLACES
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: compare.sh BUILD_DIR [THREADS] [SECONDS]}
threads=${2:-1}
seconds=${3:-3}
exe=$(find "$build" -name bnorm-train-bench -type f -perm -u+x | head -n1)
[[ -n $exe ]] || { echo "compare.sh: no bnorm-train-bench under $build" >&2; exit 2; }

capabilities=(unset)
if grep -qw avx512vl /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo &&
   grep -qw avx512dq /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  capabilities+=(avx512)
fi

ours=$("$exe" --threads "$threads" --seconds "$seconds")
theirs=
for capability in "${capabilities[@]}"; do
  env=(env -u ATEN_CPU_CAPABILITY)
  [[ $capability == unset ]] || env+=(ATEN_CPU_CAPABILITY="$capability")
  theirs+=$("${env[@]}" OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" \
    /usr/bin/python3 "$here/../baselines/torch_mlp_steps.py" --threads "$threads" \
    --seconds "$seconds")$'\n'
done

/usr/bin/python3 - "$ours" "$theirs" <<'PY'
import json, sys
ours = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
theirs = [json.loads(l) for l in sys.argv[2].splitlines() if l.strip()]
print(f"| network (batch 60, {ours[0]['threads']} thread(s)) | bnorm steps/s | "
      f"PyTorch steps/s (best capability) | ratio |")
print("|---|---:|---:|---:|")
for a in ours:
    runs = [b for b in theirs if b["bn"] == a["bn"]]
    best = max(runs, key=lambda b: b["steps_per_second"])
    others = ", ".join(f"{b['capability']} {b['steps_per_second']:.0f}" for b in runs)
    name = "784-100-100-100-10 sigmoid" + (", BN before sigmoid" if a["bn"] else ", no BN")
    print(f"| {name} | {a['steps_per_second']:.0f} | {best['steps_per_second']:.0f} "
          f"({best['capability']}; all: {others}) | "
          f"{a['steps_per_second'] / best['steps_per_second']:.1f}x |")
print()
for b in theirs:
    if not b["bn"]:
        print(f"- PyTorch run: {b['framework']}, ATEN_CPU_CAPABILITY={b['aten_cpu_capability']} "
              f"(capability {b['capability']}), {b['threads']} thread(s); BLAS: {b['blas']}")
PY
