#!/usr/bin/env bash
# Prints the one-shot 2:4 table for stories260K (issue 5): dense, magnitude,
# Wanda, SparseGPT, SparseGPT mask-only, MaskLLM's SparseGPT prior — all 35 linears 2:4, calibrated on
# tinystories-train.txt (128 windows × 256 tokens, seed 0), perplexity on
# tinystories-valid.txt in 256-token chunks — next to the independent PyTorch
# reference, and fails if a method leaves its band (dense/magnitude ±0.5%,
# calibrated ±10%). Recorded in mask/RESULTS.md.
#
#   scripts/oneshot-table.sh                  # all six rows
#   METHODS=dense,magnitude scripts/oneshot-table.sh
#   OUT=out/oneshot scripts/oneshot-table.sh  # also write <method>.safetensors mask files
#                                             # (for `sparsify eval --mask`)
#   SEED=1 scripts/oneshot-table.sh           # another calibration draw
#   BENCH=1 scripts/oneshot-table.sh          # also time SparseGPT on a 4096×4096 layer
#
# Data: ../shared/data (or $SPARSIFY_SHARED_DATA). Runs the Go test
# mask/calib.TestStoriesTable, which does the work; slow on 2 busy cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=simd
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
ONESHOT_METHODS="${METHODS:-}" ONESHOT_OUT="${OUT:-}" ONESHOT_SEED="${SEED:-0}" \
  go test -count=1 -timeout 0 -run '^TestStoriesTable$' -v ./mask/calib/ >"$log" 2>&1 || status=$?
grep -E 'perplexity .* predicted tokens|block [0-9]+/[0-9]+ pruned' "$log" | sed -E 's/^[[:space:]]*(stories_test|calib_test)?[^:]*:[0-9]+: //' >&2 || true
awk '/stories_test.go:[0-9]+: table:/{on=1; next} on && /^[[:space:]]*\|/{sub(/^[[:space:]]*/, ""); print; next} {on=0}' "$log"
grep -E -- '--- (FAIL|SKIP)|stories_test.go:[0-9]+: .*(reference|skipping)' "$log" || true
if [ -n "${BENCH:-}" ]; then
  go test -run XXX -bench 'SparseGPT4096$' -benchtime 1x ./mask/ | grep -E '^Benchmark'
fi
exit "$status"
