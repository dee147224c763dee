#!/usr/bin/env bash
# Pack throughput (GB/s of dense input, BenchmarkPackCutlass) next to `cp` of the
# same number of bytes (page cache to page cache, same file system as $TMPDIR),
# measured in the same run, interleaved one cp / one pack at a time so both see
# the same machine load; best of $RUNS for each. Target: pack >= 80% of cp.
#   scripts/bench-pack.sh            # BF16 4096x4096 and F16 11008x4096, RUNS=10
#   RUNS=20 scripts/bench-pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=${GOEXPERIMENT-simd}
runs=${RUNS:-10}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go test -c -o "$tmp/pack.test" ./pack >/dev/null
printf '%-18s %10s %10s %10s %7s\n' shape bytes pack_GB/s cp_GB/s ratio
for spec in "BF16_4096x4096 33554432" "F16_11008x4096 90177536"; do
  set -- $spec
  name=$1 bytes=$2
  head -c "$bytes" /dev/urandom >"$tmp/src"
  cat "$tmp/src" >/dev/null # warm the page cache
  best_cp=0 best_pk=0
  for _ in $(seq "$runs"); do
    rm -f "$tmp/dst"
    t0=$(date +%s.%N)
    cp --reflink=never "$tmp/src" "$tmp/dst"
    t1=$(date +%s.%N)
    best_cp=$(awk -v n="$bytes" -v a="$t0" -v b="$t1" -v m="$best_cp" 'BEGIN{g=n/(b-a)/1e9; print (g>m)?g:m}')
    # One timed PackCutlassInto of the same number of dense bytes (MB/s column).
    pk=$("$tmp/pack.test" -test.run '^$' -test.bench "PackCutlass/$name\$" -test.benchtime 1x |
      awk '/MB\/s/{for(i=1;i<=NF;i++) if($i=="MB/s") print $(i-1)/1000}')
    best_pk=$(awk -v a="$pk" -v m="$best_pk" 'BEGIN{print (a>m)?a:m}')
  done
  printf '%-18s %10d %10.2f %10.2f %6.0f%%\n' "$name" "$bytes" "$best_pk" "$best_cp" \
    "$(awk -v p="$best_pk" -v c="$best_cp" 'BEGIN{print 100*p/c}')"
done
echo "pack: in-memory PackCutlassInto on GOMAXPROCS=$(nproc); cp --reflink=never; best of $runs each, interleaved."
