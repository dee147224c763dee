#!/usr/bin/env bash
# Eval benchmark (issue 5): forward-pass tokens/s of the Go engine
# (BenchmarkEvalFile, model/bench_test.go) next to the same forward pass in
# PyTorch on the CPU (scripts/peer_eval.py), alternating in the same run;
# medians over ROUNDS rounds. Both report the mean NLL of the same token ids,
# which must agree (same model, same computation). See model/BENCH.md.
#
#   scripts/bench-eval.sh                 # stories260K (16 x 256 tokens) and a ~1B BF16 synthetic (1 x 256)
#   MODELS=stories scripts/bench-eval.sh  # only stories260K
#
# Needs Debian's python3-torch and libopenblas0-pthread. The peer runs with
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset and is tuned as
# ../shared/spec/benchmarking.md says. The synthetic model (about 2 GB of BF16
# safetensors) is written once to $SYNTH_DIR (default /tmp/eval-synth1b).
# "tokens/s-cpu" divides by CPU time / 2 cores: comparable on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=simd
ROUNDS=${ROUNDS:-3}
MODELS=${MODELS:-"stories synth1b"}
PY=${PYTHON:-/usr/bin/python3}
SYNTH_DIR=${SYNTH_DIR:-/tmp/eval-synth1b}
DATA=$(cd .. && pwd)/shared/data
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -c 'import torch' 2>/dev/null || { echo "bench-eval: $PY has no torch (apt-get install -y python3-torch libopenblas0-pthread)" >&2; exit 1; }
go test -c -o "$tmp/model.test" ./model
for m in $MODELS; do
  case $m in
    stories) path=$DATA/stories260K.bin; bt="16 256"; reps=3 ;;
    synth1b)
      path=$SYNTH_DIR; bt="1 256"; reps=2
      [ -f "$SYNTH_DIR/config.json" ] || go run ./internal/synth/cmd/synth -out "$SYNTH_DIR" -bytes 2000000000 ;;
    *) echo "bench-eval: unknown model $m" >&2; exit 2 ;;
  esac
  read -r B T <<<"$bt"
  for r in $(seq "$ROUNDS"); do
    SPARSIFY_BENCH_EVAL_MODEL=$path SPARSIFY_BENCH_EVAL_BT="$bt" "$tmp/model.test" -test.run '^$' \
      -test.bench 'EvalFile$' -test.benchtime "${reps}x" -test.timeout 30m \
      | awk -v m="$m" '/tokens\/s/ { for (i = 1; i <= NF; i++) { if ($(i+1) == "tokens/s") w = $i; if ($(i+1) == "tokens/s-cpu") c = $i; if ($(i+1) == "nll") n = $i }; print "go", m, w, c, n }' \
      | tee -a "$tmp/results"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" scripts/peer_eval.py --model "$path" --batch "$B" --seq "$T" --reps "$reps" \
      | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print("pytorch", sys.argv[1], round(d["tokens_per_s"], 1), round(d["tokens_per_s_cpu"], 1), round(d["nll"], 4))' "$m" \
      | tee -a "$tmp/results"
  done
done
"$PY" - "$tmp/results" <<'PY'
import statistics, sys
res = {}
for line in open(sys.argv[1]):
    who, model, w, c, n = line.split()
    r = res.setdefault(model, {}).setdefault(who, {"w": [], "c": [], "n": []})
    r["w"].append(float(w)); r["c"].append(float(c)); r["n"].append(float(n))
print("\n| model | Go tokens/s | PyTorch tokens/s | Go/PyTorch (wall) | Go tokens/s-cpu | PyTorch tokens/s-cpu | Go/PyTorch (cpu) | NLL Go / PyTorch |")
print("|---|---|---|---|---|---|---|---|")
for model, d in res.items():
    g, p = d.get("go"), d.get("pytorch")
    if not g or not p:
        continue
    gw, pw = statistics.median(g["w"]), statistics.median(p["w"])
    gc, pc = statistics.median(g["c"]), statistics.median(p["c"])
    print(f"| {model} | {gw:.0f} | {pw:.0f} | {gw / pw:.2f}x | {gc:.0f} | {pc:.0f} | {gc / pc:.2f}x | {g['n'][0]:.4f} / {p['n'][0]:.4f} |")
PY
