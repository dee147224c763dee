#!/usr/bin/env python3
"""Byte-for-byte check of sparsify's CUTLASS packing against PyTorch.

Generates seeded random matrices (pure Python, so the bytes do not depend on
the torch version), has sparsify pack them (the Go test binary built with
`go test -c -o bin/cuda.test ./kernel/cuda`, test TestPackFiles), and compares
the packed values and the reordered metadata with

  * torch.sparse.to_sparse_semi_structured (SparseSemiStructuredTensor._FORCE_CUTLASS
    = True): its .packed / .meta tensors, and
  * torch.sparse._semi_structured_conversions.sparse_semi_structured_from_dense_cutlass.

Optionally (--bench) times torch's own semi-structured matmul (CUTLASS and
cuSPARSELt backends) against dense torch.mm for the issue's shapes, as a
reference for sparsify's own table.

Usage: scripts/gpu_torch_check.py --out DIR --packer bin/cuda.test [--bench] [--dry-run]
--dry-run skips torch (checks generation, packing and file sizes only).
Exit status: 0 all compared cases equal, 1 a mismatch or error, 2 usage.
"""

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import time

# name, dtype, rows, cols, mask kind: "24" exactly 2 of 4 (1:2 for f32),
# "any" each element nonzero with p=1/2 (PyTorch's rules for other groups),
# "special" 2:4 with -0.0, NaN, Inf and subnormals among the values.
CASES = [
    ("bf16_32x64", "bf16", 32, 64, "24"),
    ("bf16_128x256", "bf16", 128, 256, "24"),
    ("f16_256x512", "f16", 256, 512, "24"),
    ("bf16_512x1024", "bf16", 512, 1024, "24"),
    ("f16_64x128_any", "f16", 64, 128, "any"),
    ("bf16_64x128_special", "bf16", 64, 128, "special"),
    ("f32_64x64_12", "f32", 64, 64, "24"),
    ("i8_64x128", "i8", 64, 128, "24"),
    ("i8_32x256_any", "i8", 32, 256, "any"),
]

ESIZE = {"bf16": 2, "f16": 2, "f32": 4, "i8": 1}


def rand_bits(rng, dt):
    """A random nonzero finite value of dt, as an unsigned bit pattern."""
    s = rng.getrandbits(1)
    if dt == "bf16":
        return s << 15 | rng.randint(110, 140) << 7 | rng.getrandbits(7)
    if dt == "f16":
        return s << 15 | rng.randint(5, 25) << 10 | rng.getrandbits(10)
    if dt == "f32":
        return s << 31 | rng.randint(110, 140) << 23 | rng.getrandbits(23)
    v = rng.randint(1, 127) * (1 if s else -1)
    return v & 0xFF


SPECIAL = {  # bf16 bit patterns that must survive packing bit-exactly
    "nan": 0x7FC1, "inf": 0x7F80, "-inf": 0xFF80, "subnormal": 0x0001, "-subnormal": 0x8003,
}


def gen(seed, dt, rows, cols, kind):
    rng = random.Random(seed)
    group = 2 if dt == "f32" else 4
    keep = 1 if dt == "f32" else 2
    fmt = {"bf16": "<H", "f16": "<H", "f32": "<I", "i8": "<B"}[dt]
    negzero = {"bf16": 0x8000, "f16": 0x8000, "f32": 0x80000000, "i8": 0}[dt]
    out = bytearray()
    specials = list(SPECIAL.values())
    for _ in range(rows):
        for _ in range(cols // group):
            if kind == "any":
                nz = [rng.random() < 0.5 for _ in range(group)]
            else:
                pos = rng.sample(range(group), keep)
                nz = [i in pos for i in range(group)]
            for i in range(group):
                if nz[i]:
                    v = rand_bits(rng, dt)
                    if kind == "special" and rng.random() < 0.2:
                        v = rng.choice(specials)
                else:
                    v = negzero if rng.random() < 0.25 else 0  # -0.0 is zero
                out += struct.pack(fmt, v)
    return bytes(out)


def tensor_bytes(t):
    import torch
    t = t.detach().contiguous().cpu()
    u8 = t.view(torch.uint8) if t.dtype != torch.uint8 else t
    try:
        return u8.numpy().tobytes()
    except Exception:  # numpy missing
        return bytes(u8.flatten().tolist())


def first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b)) if len(a) != len(b) else -1


def torch_pack(torch, raw, dt, rows, cols):
    """Returns {ref name: (values bytes, meta bytes)} or {ref name: error}."""
    tdt = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32, "i8": torch.int8}[dt]
    dense = torch.frombuffer(bytearray(raw), dtype=tdt).reshape(rows, cols).cuda()
    refs = {}
    try:
        from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured
        SparseSemiStructuredTensor._FORCE_CUTLASS = True
        sp = to_sparse_semi_structured(dense)
        vals = getattr(sp, "packed", None)
        meta = getattr(sp, "meta", None)
        if vals is None or meta is None:  # PyTorch 2.1 names
            vals, meta = sp.values(), sp.indices()
        if vals.numel() != rows * cols // 2:  # some versions keep values+meta in one buffer
            vals = vals.flatten()[: rows * cols // 2]
        refs["to_sparse_semi_structured"] = (tensor_bytes(vals), tensor_bytes(meta))
    except Exception as e:
        refs["to_sparse_semi_structured"] = "error: %s: %s" % (type(e).__name__, str(e).splitlines()[0][:160])
    try:
        from torch.sparse._semi_structured_conversions import sparse_semi_structured_from_dense_cutlass
        v, m = sparse_semi_structured_from_dense_cutlass(dense)
        refs["from_dense_cutlass"] = (tensor_bytes(v), tensor_bytes(m))
    except Exception as e:
        refs["from_dense_cutlass"] = "error: %s: %s" % (type(e).__name__, str(e).splitlines()[0][:160])
    return refs


def bench(torch, log):
    """Times torch's semi-structured W @ x against dense for the issue's shapes."""
    from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured
    rows = []
    for n, k in [(4096, 4096), (11008, 4096), (4096, 11008)]:
        g = torch.Generator(device="cuda").manual_seed(0)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=g)
        mask = torch.tensor([1, 1, 0, 0], device="cuda", dtype=torch.bool).tile(n, k // 4)
        idx = torch.rand(n, k // 4, 4, device="cuda", generator=g).argsort(-1)
        mask = torch.gather(mask.view(n, k // 4, 4), 2, idx).view(n, k)
        w = w * mask
        sps = {}
        for backend, force in (("cutlass", True), ("cusparselt", False)):
            SparseSemiStructuredTensor._FORCE_CUTLASS = force
            try:
                sps[backend] = to_sparse_semi_structured(w)
            except Exception as e:
                log.write("torch %s backend unavailable: %s\n" % (backend, e))
        for t in (16, 512, 4096):
            x = torch.randn(k, t, device="cuda", dtype=torch.bfloat16, generator=g)
            res = {"dense": timed(torch, lambda: torch.mm(w, x))}
            for name, sp in sps.items():
                try:
                    res[name] = timed(torch, lambda: torch.mm(sp, x))
                except Exception as e:
                    log.write("torch %s %dx%d t=%d: %s\n" % (name, n, k, t, e))
                    res[name] = float("nan")
            rows.append((n, k, t, res))
            log.write("torch bench %dx%d t=%d %s\n" % (n, k, t, res))
    return rows


def timed(torch, f, iters=20):
    for _ in range(3):
        f()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(iters):
        f()
    b.record()
    b.synchronize()
    return a.elapsed_time(b) / iters


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="work and log folder")
    ap.add_argument("--packer", default="bin/cuda.test", help="Go test binary of ./kernel/cuda")
    ap.add_argument("--seed", type=int, default=20241204)
    ap.add_argument("--bench", action="store_true", help="also time torch semi-structured vs dense")
    ap.add_argument("--dry-run", action="store_true", help="no torch: generate, pack, check sizes")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "torch-check.log"), "w")
    t0 = time.time()

    index = []
    raws = {}
    for i, (name, dt, rows, cols, kind) in enumerate(CASES):
        raw = gen(a.seed + i, dt, rows, cols, kind)
        raws[name] = raw
        with open(os.path.join(a.out, name + ".dense.bin"), "wb") as f:
            f.write(raw)
        index.append({"name": name, "dtype": dt, "rows": rows, "cols": cols})
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    env = dict(os.environ, SPARSIFY_PACK_DIR=os.path.abspath(a.out))
    p = subprocess.run([a.packer, "-test.run", "^TestPackFiles$", "-test.v"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    log.write(p.stdout)
    if p.returncode != 0:
        print("packer failed (%d); see %s" % (p.returncode, log.name))
        return 1

    torch = None
    if not a.dry_run:
        import torch  # noqa: F811 (present on GPU machines)
        log.write("torch %s, CUDA %s, %s\n" % (torch.__version__, torch.version.cuda, torch.cuda.get_device_name()))

    results = []
    bad = 0
    for name, dt, rows, cols, kind in CASES:
        vals = open(os.path.join(a.out, name + ".values.bin"), "rb").read()
        meta = open(os.path.join(a.out, name + ".meta.bin"), "rb").read()
        mbytes = rows * cols // 4 if dt == "f32" else rows * cols // 8  # I16 meta (I32 for i8)
        want_v = rows * cols // 2 * ESIZE[dt]
        if len(vals) != want_v or len(meta) != mbytes:
            results.append((name, "sparsify", "FAIL sizes %d/%d, want %d/%d" % (len(vals), len(meta), want_v, mbytes)))
            bad += 1
            continue
        if torch is None:
            results.append((name, "sizes", "ok (dry run)"))
            continue
        compared = 0
        for ref, got in torch_pack(torch, raws[name], dt, rows, cols).items():
            if isinstance(got, str):  # this reference refused the case: reported, not a failure by itself
                results.append((name, ref, got))
                continue
            compared += 1
            dv, dm = first_diff(vals, got[0]), first_diff(meta, got[1])
            if dv < 0 and dm < 0:
                results.append((name, ref, "EQUAL (%d + %d bytes)" % (len(vals), len(meta))))
            else:
                bad += 1
                results.append((name, ref, "DIFFER values@%d meta@%d (len %d/%d vs %d/%d)" % (
                    dv, dm, len(vals), len(meta), len(got[0]), len(got[1]))))
        if compared == 0:
            bad += 1
            results.append((name, "-", "FAIL: no PyTorch reference accepted this case"))
    for r in results:
        log.write("%-22s %-26s %s\n" % r)
    if a.bench and torch is not None:
        rows = bench(torch, log)
        with open(os.path.join(a.out, "torch-bench.tsv"), "w") as f:
            f.write("N\tK\ttokens\ttorch_dense_ms\ttorch_cutlass_ms\ttorch_cusparselt_ms\n")
            for n, k, t, r in rows:
                f.write("%d\t%d\t%d\t%.4f\t%.4f\t%.4f\n" % (n, k, t, r["dense"], r.get("cutlass", float("nan")),
                                                            r.get("cusparselt", float("nan"))))
    log.write("done in %.1f s, %d bad\n" % (time.time() - t0, bad))
    for r in results:
        print("%-22s %-26s %s" % r)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
