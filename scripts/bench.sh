#!/usr/bin/env bash
# make bench: every benchmark script, each comparing against its peer in the same run.
# Figures and how to read them: README.md "Performance".
set -euo pipefail
cd "$(dirname "$0")/.."
for s in bench-gemm.sh bench-pack.sh bench-convert.sh bench-eval.sh bench-train.sh; do
  if [ -x "scripts/$s" ]; then
    echo "=== scripts/$s"
    "scripts/$s"
  fi
done
