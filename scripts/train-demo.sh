#!/usr/bin/env bash
# Reproduces sparsify's demo model, testdata/demo/kjv-tiny.gguf, and its text
# slices testdata/demo/train.txt and valid.txt (recipe: testdata/README.md).
#
#   scripts/train-demo.sh                 # writes testdata/demo/
#   OUT=/tmp/demo scripts/train-demo.sh   # elsewhere
#
# Needs Debian's bible-kjv (the `bible` program) and bible-kjv-text (the King
# James Version text, public domain):
#   apt-get update && apt-get install -y bible-kjv bible-kjv-text
# Deterministic for a given build of sparsify and GOMAXPROCS (the recipe used
# GOMAXPROCS=2): the seed fixes the initial weights and the batches.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=simd
export GOMAXPROCS=${GOMAXPROCS:-2}
OUT=${OUT:-testdata/demo}
if ! command -v bible >/dev/null; then
  echo "train-demo: the bible program is missing: apt-get install -y bible-kjv bible-kjv-text" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bible -l100000 "Ge1:1-Re22:21" > "$tmp/kjv.txt"
go run ./model/train/cmd/train-demo -kjv "$tmp/kjv.txt" -out "$OUT" \
  -steps "${STEPS:-1000}" -batch 8 -seq 256 -seed "${SEED:-1}" -lr 3e-3 -warmup 50 -vocab 512 -verses 5 "$@"
