#!/usr/bin/env bash
# Steps/s of the paper's MLP (batch 60, with and without BN): bnorm's engine vs PyTorch, same
# threads, one run. Prints a Markdown table (for docs/benchmarks.md) with the ratio.
#   bench/train/compare.sh BUILD_DIR [THREADS] [SECONDS]
# BUILD_DIR holds bnorm-train-bench (bench/train/bnorm-train-bench when built from the top-level
# project, or ./bnorm-train-bench for the standalone build of bench/train).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: compare.sh BUILD_DIR [THREADS] [SECONDS]}
threads=${2:-1}
seconds=${3:-3}
exe=$(find "$build" -name bnorm-train-bench -type f -perm -u+x | head -n1)
[[ -n $exe ]] || { echo "compare.sh: no bnorm-train-bench under $build" >&2; exit 2; }

ours=$("$exe" --threads "$threads" --seconds "$seconds")
theirs=$(OMP_NUM_THREADS=$threads /usr/bin/python3 "$here/../baselines/torch_mlp_steps.py" \
  --threads "$threads" --seconds "$seconds")

/usr/bin/python3 - "$ours" "$theirs" <<'PY'
import json, sys
ours = [json.loads(l) for l in sys.argv[1].splitlines()]
theirs = [json.loads(l) for l in sys.argv[2].splitlines()]
print(f"| network (batch 60, {ours[0]['threads']} thread(s)) | bnorm steps/s | {theirs[0]['framework']} steps/s | ratio |")
print("|---|---:|---:|---:|")
for a, b in zip(ours, theirs):
    name = "784-100-100-100-10 sigmoid" + (", BN before sigmoid" if a["bn"] else ", no BN")
    print(f"| {name} | {a['steps_per_second']:.0f} | {b['steps_per_second']:.0f} | "
          f"{a['steps_per_second'] / b['steps_per_second']:.1f}x |")
PY
