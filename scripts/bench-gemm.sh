#!/usr/bin/env bash
# Dense SGEMM and 2:4 sparse GEMM against the numpy/OpenBLAS peer, on the
# issue-4 shapes (tokens × out × in): 512×4096×4096 and 512×11008×4096.
#
# Usage: scripts/bench-gemm.sh [ROUNDS]   (default 5)
#
# Each round runs, for every shape, our MatMulT, our SparseMatMulT and the
# peer (x @ W.T in numpy), one after the other, so the three see the same
# machine load; the table gives medians over all rounds. Besides wall-clock
# GFLOP/s it prints CPU-normalised GFLOP/s (FLOPs per CPU-second of the
# process, times its thread count): on a shared machine that says how fast
# each side runs while it has the cores, and its ratio is the steadier one.
#
# Peer: Debian's numpy on libopenblas0-pthread, run from /usr/bin/python3 with
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset. If OpenBLAS then falls back to
# a generic core (0.3.21 does not know this CPU and picks "Prescott", half
# speed or worse), the script sets OPENBLAS_CORETYPE=SkylakeX — the fastest
# core measured here (Cooperlake/SapphireRapids are equal or slower) — because
# that is how a user would tune it; PEER_CORETYPE=auto keeps the fallback and
# PEER_CORETYPE=<name> forces one.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=${GOEXPERIMENT-simd}
ROUNDS=${1:-5}
REPS=${REPS:-3}
SHAPES=(512x4096x4096 512x11008x4096)

if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	echo "numpy missing: apt-get install -y python3-numpy libopenblas0-pthread python3-threadpoolctl" >&2
	exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-gemm.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
go test -c -o "$WORK/kernel.test" ./kernel/

peer() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ${CORETYPE:+OPENBLAS_CORETYPE=$CORETYPE} /usr/bin/python3 scripts/peer_gemm.py "$@"; }

CORETYPE=
case "${PEER_CORETYPE:-fix}" in
auto) ;;
fix)
	arch=$(peer 0 | /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["blas"][0].get("architecture") or "")')
	case "$arch" in
	Prescott | Core2 | Nehalem | Katmai | Coppermine | Northwood | Banias | Atom | "")
		if grep -qw avx512f /proc/cpuinfo; then CORETYPE=SkylakeX; fi
		echo "peer: OpenBLAS auto-detected core '$arch'; using OPENBLAS_CORETYPE=${CORETYPE:-<unset>}"
		;;
	*) echo "peer: OpenBLAS core '$arch'" ;;
	esac
	;;
*) CORETYPE=$PEER_CORETYPE ;;
esac
peer 0 | head -1 >"$WORK/peerinfo.json"
echo "peer BLAS: $(cat "$WORK/peerinfo.json")"
echo "our kernel: $("$WORK/kernel.test" -test.run 'TestKernelSetsPresent' -test.v 2>&1 | grep -o 'active kernel [a-z0-9]*')"

for r in $(seq 1 "$ROUNDS"); do
	for s in "${SHAPES[@]}"; do
		(cd kernel && "$WORK/kernel.test" -test.run '^$' -test.bench "^Benchmark(Sparse)?MatMulT\$/^${s}\$" \
			-test.benchtime "${REPS}x" -test.count 1) | grep '^Benchmark' >>"$WORK/go.txt"
		peer "$REPS" "$s" | tail -n +2 >>"$WORK/peer.jsonl"
	done
	echo "round $r/$ROUNDS done" >&2
done

/usr/bin/python3 - "$WORK/go.txt" "$WORK/peer.jsonl" <<'PY'
import json, re, statistics, sys
go = {}
for line in open(sys.argv[1]):
    f = line.split()
    name = re.sub(r"-\d+$", "", f[0])
    kind, shape = name.split("/")
    vals = {f[i + 1]: float(f[i]) for i in range(2, len(f) - 1, 2)}
    go.setdefault((kind, shape), []).append(vals)
peer = {}
for line in open(sys.argv[2]):
    d = json.loads(line)
    peer.setdefault(d["shape"], []).append(d)
med = statistics.median
print()
print("| shape (tokens×out×in) | ours dense GFLOP/s | OpenBLAS GFLOP/s | dense/OpenBLAS | ours dense GFLOP/s-cpu | OpenBLAS GFLOP/s-cpu | dense/OpenBLAS (cpu) | sparse time / dense time | sparse/dense (cpu) | sparse/dense (back to back) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for shape in sorted({s for _, s in go}, key=lambda s: [int(v) for v in s.split("x")]):
    m, n, k = (int(v) for v in shape.split("x"))
    flops = 2 * m * n * k
    d = go.get(("BenchmarkMatMulT", shape), [])
    sp = go.get(("BenchmarkSparseMatMulT", shape), [])
    p = peer.get(shape, [])
    if not d or not sp or not p:
        continue
    dw, dc = med(x["GFLOP/s"] for x in d), med(x["GFLOP/s-cpu"] for x in d)
    sw, sc = med(x["GFLOP/s"] for x in sp), med(x["GFLOP/s-cpu"] for x in sp)
    pw = flops / med(x["wall"] for x in p) / 1e9
    pc = flops / med(x["cpu"] / x["threads"] for x in p) / 1e9
    bb = [x["sparse/dense"] for x in sp if "sparse/dense" in x]
    bbs = f"{med(bb):.2f}" if bb else "-"
    print(f"| {shape} | {dw:.0f} | {pw:.0f} | {dw/pw:.2f} | {dc:.0f} | {pc:.0f} | {dc/pc:.2f} | {dw/sw:.2f} | {dc/sc:.2f} | {bbs} |")
print()
print("sparse time / dense time < 1 means the 2:4 kernel is faster (0.67 = 1.5x, 0.5 = the 2x arithmetic limit).")
print("back to back: CPU time of the sparse benchmark over as many dense calls run right after it in the same process.")
print(f"medians over {len(next(iter(go.values())))} runs per cell; GFLOP/s are dense-equivalent (2*m*n*k) for the sparse kernel too.")
PY
