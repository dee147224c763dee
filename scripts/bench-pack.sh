#!/usr/bin/env bash
# Pack throughput (GB/s of dense input, BenchmarkPackCutlass) next to `cp` of the
# same number of bytes (page cache to page cache, same file system as $TMPDIR),
# measured in the same run. Target: pack >= 80% of cp.
#   scripts/bench-pack.sh            # BF16 4096x4096 and F16 11008x4096
#   RUNS=10 scripts/bench-pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=${GOEXPERIMENT-simd}
runs=${RUNS:-10}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# cp_gbs BYTES: best-of-$runs GB/s of cp --reflink=never of a BYTES-byte file.
cp_gbs() {
  local n=$1 best=0
  head -c "$n" /dev/urandom >"$tmp/src"
  cat "$tmp/src" >/dev/null # warm the page cache
  for _ in $(seq "$runs"); do
    rm -f "$tmp/dst"
    local t0 t1
    t0=$(date +%s.%N)
    cp --reflink=never "$tmp/src" "$tmp/dst"
    t1=$(date +%s.%N)
    best=$(awk -v n="$n" -v a="$t0" -v b="$t1" -v best="$best" 'BEGIN{g=n/(b-a)/1e9; print (g>best)?g:best}')
  done
  rm -f "$tmp/src" "$tmp/dst"
  echo "$best"
}

go test -c -o "$tmp/pack.test" ./pack >/dev/null
printf '%-24s %12s %10s %10s %7s\n' shape bytes pack_GB/s cp_GB/s ratio
for spec in "BF16_4096x4096 33554432" "F16_11008x4096 90177536"; do
  set -- $spec
  name=$1 bytes=$2
  cp1=$(cp_gbs "$bytes")
  # MB/s column of the benchmark line; best of two runs.
  pk=$("$tmp/pack.test" -test.run '^$' -test.bench "PackCutlass/$name\$" -test.benchtime "${runs}x" -test.count 2 |
    awk '/MB\/s/{for(i=1;i<=NF;i++) if($i=="MB/s") v=$(i-1); if(v>b) b=v} END{print b/1000}')
  cp2=$(cp_gbs "$bytes")
  cpg=$(awk -v a="$cp1" -v b="$cp2" 'BEGIN{print (a>b)?a:b}')
  printf '%-24s %12d %10.2f %10.2f %6.0f%%\n' "$name" "$bytes" "$pk" "$cpg" "$(awk -v p="$pk" -v c="$cpg" 'BEGIN{print 100*p/c}')"
done
echo "pack: in-memory PackCutlassInto over GOMAXPROCS=$(nproc) cores; cp: best of $runs, GOMAXPROCS-independent."
