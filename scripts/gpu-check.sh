#!/usr/bin/env bash
# gpu-check.sh OUTDIR — the one prepared check for a GPU machine (issue 7).
#
# Runs on a machine with an NVIDIA GPU (sm_80+), its driver, PyTorch and the
# CUDA libraries (pip nvidia-* wheels or a toolkit), and NO network and NO Go:
# it builds nothing. The binaries are built beforehand on any machine and
# copied along in bin/ (see docs/GPU.md, "GPU bundle"):
#
#   export GOEXPERIMENT=simd
#   go build -o bin/sparsify ./cmd/sparsify
#   go test -c -o bin/cuda.test ./kernel/cuda
#   go test -c -o bin/verify.test ./verify
#
# Steps (each with its own timeout, 530 s in all at worst; expect 2-4 minutes):
#   1. GPU tests of kernel/cuda: driver API, NVRTC compile + cache, Launch
#      argument marshalling, our mma.sp kernel against its CPU emulation and
#      against cuBLAS, cuSPARSELt against cuBLAS, the FP32 split path.
#   2. verify's CUDA GEMM backend (both engines) through verify's own check.
#   3. Byte-for-byte: our cutlass packing vs torch.sparse.to_sparse_semi_structured
#      (CUTLASS backend) on seeded random matrices; torch's own sparse/dense timings.
#   4. Benchmark table: sparse (mma.sp, cuSPARSELt) vs dense cuBLAS, BF16,
#      shapes 4096x4096, 11008x4096, 4096x11008 at 16, 512, 4096 tokens.
# Full logs go to OUTDIR; a short table is printed at the end.
# Exit status: 0 all steps passed, 1 some step failed, 2 usage/missing files.
set -u

OUT=${1:-}
if [ -z "$OUT" ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
BIN=${BIN:-bin}
cd "$(dirname "$0")/.." || exit 2
for f in "$BIN/cuda.test" "$BIN/verify.test" scripts/gpu_torch_check.py; do
	if [ ! -e "$f" ]; then
		echo "gpu-check: missing $f (build the GPU bundle first: docs/GPU.md)" >&2
		exit 2
	fi
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export SPARSIFY_CUDA_CACHE="$OUT/kernel-cache" # fresh: the first compile is timed too
T0=$(date +%s)

{
	date -u
	nvidia-smi 2>&1 || echo "nvidia-smi not found"
	python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1
	python3 - <<'EOF' 2>&1
import glob, site, sys
for d in site.getsitepackages() + sys.path:
    for lib in glob.glob(d + "/nvidia/*/lib/lib*.so*"):
        print(lib)
EOF
} >"$OUT/env.log"

declare -A STATUS
step() { # step NAME TIMEOUT LOG cmd...
	local name=$1 to=$2 log=$3
	shift 3
	local s=$(date +%s)
	timeout "$to" "$@" >"$OUT/$log" 2>&1
	local rc=$?
	local res=PASS
	[ $rc -ne 0 ] && res="FAIL(rc=$rc)"
	[ $rc -eq 124 ] && res="TIMEOUT(${to}s)"
	STATUS[$name]="$res $(($(date +%s) - s))s  $log"
	echo "gpu-check: $name: ${STATUS[$name]}"
}

step cuda-tests 120 cuda-tests.log "$BIN/cuda.test" -test.v -test.count=1 \
	-test.run '^(TestGPUOpen|TestGPULaunchArgs|TestGPUSpMM|TestGPUCuSparseLt|TestGPUF32|TestEmu.*|TestMmaSp.*)$'
if grep -q -- '--- SKIP: TestGPUOpen' "$OUT/cuda-tests.log" 2>/dev/null; then
	STATUS[cuda-tests]="NO-GPU: $(grep -m1 'no GPU:' "$OUT/cuda-tests.log" | sed 's/^ *gpu_test.go:[0-9]*: //' | cut -c1-300)"
	echo "gpu-check: cuda-tests: ${STATUS[cuda-tests]}"
fi
step verify-cuda 60 verify-cuda.log "$BIN/verify.test" -test.v -test.count=1 -test.run '^(TestCUDA.*|TestBackendFor.*)$'
step torch-bytes 150 torch-check.out python3 scripts/gpu_torch_check.py --out "$OUT/torch" --packer "$BIN/cuda.test" --bench
SPARSIFY_GPU_BENCH="$OUT/bench.tsv" step bench 200 bench.log "$BIN/cuda.test" -test.v -test.count=1 -test.run '^TestGPUBenchTable$'

# ---- short table ----
{
	echo
	echo "== sparsify GPU check, $(date -u +%Y-%m-%d), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
	grep -h -m1 'nvrtc .*kernel (cache' "$OUT/cuda-tests.log" 2>/dev/null | sed 's/^ *gpu_test.go:[0-9]*: /  /'
	for s in cuda-tests verify-cuda torch-bytes bench; do
		printf '%-12s %s\n' "$s" "${STATUS[$s]:-not run}"
	done
	grep -E '^--- (SKIP|FAIL)' "$OUT/cuda-tests.log" "$OUT/verify-cuda.log" "$OUT/bench.log" 2>/dev/null | sed 's/^/  /'
	grep -h 'worst |Δ|/tol\|worst ratio' "$OUT/cuda-tests.log" "$OUT/verify-cuda.log" 2>/dev/null | sed 's/^ */  /' | head -12
	echo "-- cutlass bytes vs PyTorch:"
	sed 's/^/  /' "$OUT/torch-check.out" 2>/dev/null | grep -v '^  *$' | head -24
	if [ -s "$OUT/bench.tsv" ]; then
		echo "-- BF16 GEMM, ms (ratio = dense time / sparse time, >1: sparse faster):"
		column -t -s $'\t' "$OUT/bench.tsv" 2>/dev/null | sed 's/^/  /' || sed 's/^/  /' "$OUT/bench.tsv"
	fi
	if [ -s "$OUT/torch/torch-bench.tsv" ]; then
		echo "-- torch on the same shapes (W @ x, ms):"
		column -t -s $'\t' "$OUT/torch/torch-bench.tsv" 2>/dev/null | sed 's/^/  /'
	fi
	echo "total $(($(date +%s) - T0)) s; logs in $OUT"
} | tee "$OUT/summary.txt"

for s in cuda-tests verify-cuda torch-bytes bench; do
	case "${STATUS[$s]:-}" in PASS*) ;; *) exit 1 ;; esac
done
exit 0
