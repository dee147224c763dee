#!/usr/bin/python3
"""numpy/OpenBLAS peer for scripts/bench-gemm.sh.

Times y = x @ W.T (x [m,k], W [n,k], float32) -- the same product as
kernel.MatMulT -- and prints one JSON line per repetition:
  {"shape": "MxNxK", "wall": seconds, "cpu": process CPU seconds, "threads": T}
A first line reports which BLAS numpy runs (threadpoolctl).

Usage: peer_gemm.py REPS MxNxK [MxNxK ...]
Run with /usr/bin/python3 (Debian numpy + libopenblas0-pthread).
"""
import json
import sys
import time

import numpy as np

try:
    from threadpoolctl import threadpool_info
    info = [
        {k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")}
        for d in threadpool_info()
    ]
except Exception as e:  # threadpoolctl missing: fall back to numpy's config
    info = [{"error": str(e)}]
print(json.dumps({"blas": info, "numpy": np.__version__}), flush=True)
threads = max([d.get("num_threads") or 1 for d in info] + [1])

reps = int(sys.argv[1])
rng = np.random.default_rng(1)
for spec in sys.argv[2:]:
    m, n, k = (int(v) for v in spec.split("x"))
    x = rng.random((m, k), dtype=np.float32) * 2 - 1
    w = rng.random((n, k), dtype=np.float32) * 2 - 1
    y = np.empty((m, n), dtype=np.float32)
    np.matmul(x, w.T, out=y)  # warm-up
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        np.matmul(x, w.T, out=y)
        t1, c1 = time.perf_counter(), time.process_time()
        print(json.dumps({"shape": spec, "wall": t1 - t0, "cpu": c1 - c0, "threads": threads}), flush=True)
