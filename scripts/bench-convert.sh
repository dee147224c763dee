#!/usr/bin/env bash
# Convert benchmark: sparsify convert vs cp of the same bytes, peak RSS, and
# the size table of the sparse layouts. Usage:
#   scripts/bench-convert.sh [BYTES]      (default 1073741824: a 1 GiB BF16 checkpoint)
# Environment: WORK (scratch dir, default a mktemp under $TMPDIR), JOBS (default nproc).
# Figures: docs/BENCH-convert.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=${GOEXPERIMENT-simd}
BYTES=${1:-1073741824}
JOBS=${JOBS:-$(nproc)}
SP=$PWD/bin/sparsify
go build -o "$SP" ./cmd/sparsify
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/sparsify-bench.XXXXXX")}
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
TIME=/usr/bin/time

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(uname -m)"
echo "generating a ${BYTES}-byte synthetic BF16 LLaMA-shaped checkpoint"
go run ./internal/synth/cmd/synth -out "$WORK/in" -bytes "$BYTES" -seed 1
IN=$WORK/in
MODEL=$IN/model.safetensors
SIZE=$(stat -c %s "$MODEL")
LARGEST=$("$SP" inspect "$IN" --json | python3 -c 'import json,sys; print(max(t["bytes"] for t in json.load(sys.stdin)["tensors"]))')
cat "$MODEL" > /dev/null # warm the page cache for every run alike

# secs CMD... : wall seconds of one run (best of 3), peak RSS (KiB) of the last
run() {
	local best="" rss=0 t
	for i in 1 2 3; do
		rm -rf "$WORK/out" "$WORK/out.gguf" "$WORK/cp.safetensors"
		sync
		$TIME -f '%e %M' -o "$WORK/time.txt" "$@" > /dev/null
		t=$(cut -d' ' -f1 "$WORK/time.txt")
		rss=$(cut -d' ' -f2 "$WORK/time.txt")
		if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; fi
	done
	echo "$best $rss"
}

read CP CPRSS < <(run bash -c "cp '$MODEL' '$WORK/cp.safetensors' && sync '$WORK/cp.safetensors'")
read CV CVRSS < <(run "$SP" convert "$IN" "$WORK/out" -q --jobs "$JOBS")
read CG CGRSS < <(run "$SP" convert "$IN" "$WORK/out.gguf" --to gguf -q --jobs "$JOBS")
read CM CMRSS < <(run "$SP" convert "$IN" "$WORK/out" -q --jobs "$JOBS" --method magnitude --layout cutlass)
mb() { awk "BEGIN{printf \"%.0f\", $SIZE/1e6/$1}"; }
pct() { awk "BEGIN{printf \"%.0f%%\", 100*$2/$1}"; }
TARGET=$(( (2*LARGEST + 100*1000*1000) / 1024 ))
echo
echo "### Throughput and peak RSS ($SIZE bytes, largest tensor $LARGEST bytes, --jobs $JOBS)"
echo
echo "| run | wall s (best of 3) | MB/s | vs cp | peak RSS MiB |"
echo "|---|---|---|---|---|"
echo "| cp + sync (baseline) | $CP | $(mb $CP) | 100% | $((CPRSS/1024)) |"
echo "| convert safetensors → safetensors | $CV | $(mb $CV) | $(pct $CV $CP) | $((CVRSS/1024)) |"
echo "| convert safetensors → GGUF (q/k permuted) | $CG | $(mb $CG) | $(pct $CG $CP) | $((CGRSS/1024)) |"
echo "| convert --method magnitude --layout cutlass | $CM | $(mb $CM) | $(pct $CM $CP) | $((CMRSS/1024)) |"
echo
echo "RSS target (2 × largest tensor + 100 MB): $((TARGET/1024)) MiB"

sizes() { # NAME SRC DTYPEFLAG
	local name=$1 src=$2; shift 2
	echo
	echo "### Sizes on disk: $name (model files only, bytes)"
	echo
	echo "| layout | plain | zstd | plain / dense input |"
	echo "|---|---|---|---|"
	local base
	base=$(du -cb "$src"/*.safetensors* 2>/dev/null | tail -1 | cut -f1)
	for layout in dense cutlass bitmask; do
		rm -rf "$WORK/s" "$WORK/sz"
		"$SP" convert "$src" "$WORK/s" -q --method magnitude --layout "$layout" "$@" > /dev/null
		"$SP" convert "$src" "$WORK/sz" -q --method magnitude --layout "$layout" --compress zstd "$@" > /dev/null
		local a b
		a=$(du -cb "$WORK"/s/*.safetensors* | tail -1 | cut -f1)
		b=$(du -cb "$WORK"/sz/*.safetensors* | tail -1 | cut -f1)
		echo "| $layout | $a | $b | $(awk "BEGIN{printf \"%.3f\", $a/$base}") |"
	done
	echo "(dense input: $base bytes)"
}
if [ -f ../shared/data/stories260K.gguf ]; then
	"$SP" convert ../shared/data/stories260K.gguf "$WORK/stories/" --dtype bf16 -q > /dev/null
	sizes "stories260K (BF16)" "$WORK/stories"
fi
sizes "synthetic $SIZE-byte BF16" "$IN"
