#!/usr/bin/env bash
# make demo: the whole product on the model we ship (or MODEL=path make demo).
#
#   dense eval → magnitude, SparseGPT and a short MaskLLM run → pack (cutlass, BF16)
#   → verify against the original → eval of each packed checkpoint → a table and the
#   MaskLLM learning-curve PNG.
#
# Environment: MODEL (default testdata/demo/kjv-tiny.gguf), TEXT (held-out text),
# CALIB (calibration / mask-training text), STEPS (MaskLLM steps), OUT (results folder,
# default demo-out/). For ../shared/data/stories260K.gguf the texts default to
# tinystories-valid.txt / tinystories-train.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=${GOEXPERIMENT-simd}
SP=./bin/sparsify
go build -o "$SP" ./cmd/sparsify

MODEL=${MODEL:-${1:-testdata/demo/kjv-tiny.gguf}}
case "$MODEL" in
*stories260K*)
	d=$(dirname "$MODEL")
	TEXT=${TEXT:-$d/tinystories-valid.txt}
	CALIB=${CALIB:-$d/tinystories-train.txt}
	;;
*)
	TEXT=${TEXT:-testdata/demo/valid.txt}
	CALIB=${CALIB:-testdata/demo/train.txt}
	;;
esac
STEPS=${STEPS:-150}
OUT=${OUT:-demo-out}
SEQ=${SEQ:-256}
for f in "$MODEL" "$TEXT" "$CALIB"; do
	[ -e "$f" ] || { echo "demo: $f not found" >&2; exit 2; }
done

rm -rf "$OUT"
mkdir -p "$OUT"
step() { echo; echo "== $*"; }
ppl() { "$SP" eval "$1" --text "$TEXT" --seq-len "$SEQ" --json 2>/dev/null | sed -n 's/.*"perplexity": *\([0-9.eE+-]*\).*/\1/p'; }

$SP version
step "inspect $MODEL"
$SP inspect "$MODEL" >"$OUT/inspect.txt"
sed -n 1,12p "$OUT/inspect.txt"

step "dense perplexity on $TEXT (chunks of $SEQ tokens)"
dense=$(ppl "$MODEL")
echo "dense: $dense"

# pack one mask source in CUTLASS layout (BF16), verify it against the original, evaluate it
pack_verify_eval() { # name, convert flags...
	local name=$1
	shift
	step "$name: convert → cutlass (BF16)"
	"$SP" convert "$MODEL" "$OUT/$name" --dtype bf16 --layout cutlass -q "$@"
	step "$name: verify against the original"
	"$SP" verify "$OUT/$name" --against "$MODEL" -q | tail -1
	local p
	p=$(ppl "$OUT/$name")
	echo "$name perplexity: $p"
	printf '%s\t%s\n' "$name" "$p" >>"$OUT/table.tsv"
}

printf 'method\tperplexity\n' >"$OUT/table.tsv"
printf 'dense (F32)\t%s\n' "$dense" >>"$OUT/table.tsv"
pack_verify_eval magnitude --method magnitude
pack_verify_eval sparsegpt --method sparsegpt --calib "$CALIB" --seq-len "$SEQ"

step "MaskLLM: $STEPS steps from the SparseGPT prior (weights frozen)"
"$SP" learn "$MODEL" "$OUT/maskllm-run" --data "$CALIB" --steps "$STEPS" --batch 8 --seq-len "$SEQ" \
	--eval "$TEXT" --eval-every $((STEPS / 3 > 0 ? STEPS / 3 : 1))
pack_verify_eval maskllm --mask "$OUT/maskllm-run/mask.safetensors"

step "sizes on disk (bytes)"
du -b "$MODEL" "$OUT/magnitude" "$OUT/sparsegpt" "$OUT/maskllm" | awk '{printf "%12d  %s\n", $1, $2}'

step "perplexity on $(basename "$TEXT"), chunks of $SEQ tokens (packed checkpoints are BF16)"
column -t -s "$(printf '\t')" "$OUT/table.tsv"
png=$(ls "$OUT"/maskllm-run/*.png 2>/dev/null | head -1 || true)
[ -n "$png" ] && echo "MaskLLM learning curve: $png"
echo
echo "demo OK (results in $OUT/)"
