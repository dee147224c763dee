#!/usr/bin/env bash
# Runs every fuzz target for the given time each (default 5m): make fuzz FUZZTIME=5m
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=${GOEXPERIMENT-simd}
t=${1:-5m}
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/func //' | sort -u); do
    echo "== $pkg $f ($t)"
    go test -run="^$" -fuzz="^$f\$" -fuzztime="$t" -fuzzminimizetime=0 "$pkg"
  done
done
