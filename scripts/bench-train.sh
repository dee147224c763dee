#!/usr/bin/env bash
# Training-step benchmark (issue 6): tokens/s of one MaskLLM training step
# (forward + backward with dL/dSoft for every linear, batch 16 x 256) in Go
# (BenchmarkTrainStep, model/train_bench_test.go) next to the same step in
# PyTorch on the CPU (scripts/peer_train.py), alternating in the same run;
# medians over ROUNDS rounds. See model/BENCH-train.md.
#
#   scripts/bench-train.sh                      # stories260K
#   MODELS="stories260K synthetic100M" scripts/bench-train.sh
#
# Needs Debian's python3-torch and libopenblas0-pthread (apt-get install -y
# python3-torch libopenblas0-pthread). The peer runs with OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE unset and is tuned as ../shared/spec/benchmarking.md says.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=simd
ROUNDS=${ROUNDS:-3}
MODELS=${MODELS:-stories260K}
PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/model.test" ./model
"$PY" -c 'import torch' 2>/dev/null || { echo "bench-train: $PY has no torch (apt-get install -y python3-torch libopenblas0-pthread)" >&2; exit 1; }
for m in $MODELS; do
  reps=3
  [ "$m" = synthetic100M ] && reps=1
  for r in $(seq "$ROUNDS"); do
    SPARSIFY_BENCH_100M=1 "$tmp/model.test" -test.run '^$' -test.bench "TrainStep/$m\$" -test.benchtime "${reps}x" \
      | awk -v m="$m" '/tokens\/s/ { for (i = 1; i <= NF; i++) if ($(i+1) == "tokens/s") print "go", m, $i }' | tee -a "$tmp/results"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" scripts/peer_train.py --model "$m" --reps "$reps" \
      | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print("pytorch", d["model"], round(d["tokens_per_s"], 1))' | tee -a "$tmp/results"
  done
done
"$PY" - "$tmp/results" <<'PY'
import statistics, sys
res = {}
for line in open(sys.argv[1]):
    who, model, v = line.split()
    res.setdefault(model, {}).setdefault(who, []).append(float(v))
print("\n| model | Go tokens/s (median) | PyTorch tokens/s (median) | Go / PyTorch |")
print("|---|---|---|---|")
for model, d in res.items():
    g, p = statistics.median(d.get("go", [0])), statistics.median(d.get("pytorch", [0]))
    print(f"| {model} | {g:.0f} | {p:.0f} | {g / p if p else float('nan'):.2f}x |")
PY
