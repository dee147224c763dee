#!/usr/bin/env bash
# Convert benchmark: sparsify convert vs cp of the same bytes, peak RSS, and
# the size table of the sparse layouts. Usage:
#   scripts/bench-convert.sh [BYTES]      (default 1073741824: a 1 GiB BF16 checkpoint)
# Environment: WORK (scratch dir, default a mktemp under $TMPDIR), JOBS (default nproc),
# IN (an existing checkpoint directory to time instead of generating one),
# SIZES=0 (skip the size tables).
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
if [ -n "${IN:-}" ] && [ -f "$IN/model.safetensors" ]; then
	echo "reusing the checkpoint in $IN"
else
	echo "generating a ${BYTES}-byte synthetic BF16 LLaMA-shaped checkpoint"
	go run ./internal/synth/cmd/synth -out "$WORK/in" -bytes "$BYTES" -seed 1
	IN=$WORK/in
fi
MODEL=$IN/model.safetensors
SIZE=$(stat -c %s "$MODEL")
LARGEST=$("$SP" inspect "$IN" --json | python3 -c 'import json,sys; print(max(t["bytes"] for t in json.load(sys.stdin)["tensors"]))')
cat "$MODEL" > /dev/null # warm the page cache for every run alike

# once NAME CMD... : one timed run; keeps the best wall seconds of NAME in
# BEST[NAME] and the peak RSS (KiB) of that run in RSS[NAME]
declare -A BEST RSS
once() {
	local name=$1 t m
	shift
	rm -rf "$WORK/out" "$WORK/out.gguf" "$WORK/cp.safetensors"
	sync
	$TIME -f '%e %M' -o "$WORK/time.txt" "$@" > /dev/null
	read -r t m < "$WORK/time.txt"
	if [ -z "${BEST[$name]:-}" ] || awk "BEGIN{exit !($t < ${BEST[$name]})}"; then BEST[$name]=$t RSS[$name]=$m; fi
}
# three rounds, each running cp and every conversion in turn, so that the
# shared machine's load hits them alike; best of 3 each
for round in 1 2 3; do
	once cp bash -c "cp '$MODEL' '$WORK/cp.safetensors' && sync '$WORK/cp.safetensors'"
	once st "$SP" convert "$IN" "$WORK/out" -q --jobs "$JOBS"
	once cp bash -c "cp '$MODEL' '$WORK/cp.safetensors' && sync '$WORK/cp.safetensors'"
	once gguf "$SP" convert "$IN" "$WORK/out.gguf" --to gguf -q --jobs "$JOBS"
	once mag "$SP" convert "$IN" "$WORK/out" -q --jobs "$JOBS" --method magnitude --layout cutlass
done
CP=${BEST[cp]} CPRSS=${RSS[cp]} CV=${BEST[st]} CVRSS=${RSS[st]}
CG=${BEST[gguf]} CGRSS=${RSS[gguf]} CM=${BEST[mag]} CMRSS=${RSS[mag]}
echo "load average after the timed runs: $(cut -d' ' -f1-3 /proc/loadavg)"
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
[ "${SIZES:-1}" = 0 ] && exit 0
if [ -f ../shared/data/stories260K.gguf ]; then
	"$SP" convert ../shared/data/stories260K.gguf "$WORK/stories/" --dtype bf16 -q > /dev/null
	sizes "stories260K (BF16)" "$WORK/stories"
fi
sizes "synthetic $SIZE-byte BF16" "$IN"
