#!/usr/bin/env bash
# The demo: grows with the pipeline. Usage: scripts/demo.sh [MODEL]
# MODEL defaults to ../shared/data/stories260K.gguf when present, else a
# synthetic LLaMA-shaped checkpoint generated here (internal/synth).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=${GOEXPERIMENT-simd}
SP=./bin/sparsify
[ -x "$SP" ] || go build -o "$SP" ./cmd/sparsify
$SP version

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sparsify-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

MODEL=${1:-}
if [ -z "$MODEL" ] && [ -f ../shared/data/stories260K.gguf ]; then
	MODEL=../shared/data/stories260K.gguf
fi
if [ -z "$MODEL" ]; then
	echo "== no model given: generating a synthetic one"
	go run ./internal/synth/cmd/synth -out "$WORK/synth.gguf" -gguf -dtype F32
	MODEL=$WORK/synth.gguf
fi

step() { echo; echo "== $*"; }

step "inspect $MODEL"
$SP inspect "$MODEL" | head -40

step "round trip: GGUF -> Hugging Face safetensors -> GGUF"
$SP convert "$MODEL" "$WORK/hf/" -q
$SP convert "$WORK/hf" "$WORK/back.gguf" --to gguf -q
if cmp -s "$MODEL" "$WORK/back.gguf"; then
	echo "round trip: byte-identical GGUF"
else
	echo "round trip: tensors and metadata compared below"
	$SP inspect "$MODEL" --json | grep -v '"path"' > "$WORK/a.json"
	$SP inspect "$WORK/back.gguf" --json | grep -v '"path"' > "$WORK/b.json"
	cmp "$WORK/a.json" "$WORK/b.json" && echo "round trip: identical tensors and metadata"
fi

step "prune: --dtype bf16 --method magnitude --layout cutlass"
$SP convert "$MODEL" "$WORK/cutlass" --dtype bf16 --method magnitude --layout cutlass -q
$SP inspect "$WORK/cutlass" | sed -n '1,6p'

step "expand back to dense: --layout dense"
$SP convert "$WORK/cutlass" "$WORK/dense" --layout dense -q
$SP inspect "$WORK/dense" | tail -1

step "compressed-tensors bitmask + zstd"
$SP convert "$MODEL" "$WORK/bitmask" --dtype bf16 --method magnitude --layout bitmask --compress zstd -q

step "sizes on disk"
du -b "$MODEL" "$WORK/hf" "$WORK/dense" "$WORK/cutlass" "$WORK/bitmask" | awk '{printf "%12d  %s\n", $1, $2}'
echo
echo "demo OK"
