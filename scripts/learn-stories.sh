#!/usr/bin/env bash
# MaskLLM on stories260K: learn a 2:4 mask with the weights frozen, then
# evaluate it with "sparsify eval --mask" (mask/maskllm/RESULTS.md).
#
#   scripts/learn-stories.sh [OUT] [extra learn flags...]
#
# Defaults are the released code's (spec maskllm.md §1.5) except the run
# length: STEPS (default 2000) of 16 × 256 tokens from tinystories-train.txt,
# held-out perplexity on tinystories-valid.txt at 256 tokens every 100 steps.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=simd
DATA=${DATA:-../shared/data}
OUT=${1:-/tmp/maskllm-stories}
shift || true
STEPS=${STEPS:-2000}
go build -o /tmp/sparsify-learn-stories ./cmd/sparsify
/tmp/sparsify-learn-stories learn "$DATA/stories260K.gguf" "$OUT" \
  --data "$DATA/tinystories-train.txt" --eval "$DATA/tinystories-valid.txt" \
  --steps "$STEPS" --batch 16 --seq-len 256 --eval-every 100 --checkpoint-every 100 --seed 0 "$@"
/tmp/sparsify-learn-stories eval "$DATA/stories260K.gguf" --text "$DATA/tinystories-valid.txt" \
  --mask "$OUT/mask.safetensors"
echo "log: $OUT/log.csv  plot: $OUT/curve.png"
