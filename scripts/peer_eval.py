#!/usr/bin/python3
"""PyTorch peer for BenchmarkEvalFile (model/bench_test.go): eval throughput.

Runs the forward pass of a LLaMA-architecture checkpoint (fp32 compute) over
B sequences of T tokens, ids (i*7919) mod vocab, exactly as the Go benchmark,
and prints one JSON line {"model", "tokens_per_s", "nll", ...}; "nll" (mean
next-token NLL) must match the Go side's, which shows both ran the same model.

Reads a llama2.c checkpoint (.bin: interleaved RoPE) or a Hugging Face
directory of safetensors (F32/BF16/F16, rotate-half RoPE; parsed here without
the safetensors package). Tuned as ../shared/spec/benchmarking.md says: one
OpenBLAS thread per OpenMP thread, passive OpenMP waiting, 2 torch threads,
glibc mmap/trim thresholds raised, OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset
(scripts/bench-eval.sh also unsets them before Python starts).
"""
import argparse
import ctypes
import json
import os
import statistics
import struct
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)
try:
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    libc.mallopt(M_TOP_PAD, 256 << 20)
except OSError:
    pass

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(2)


def load_llama2c(path):
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, layers, heads, kv, vocab, seq = struct.unpack("<7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    w = torch.frombuffer(bytearray(data[28:]), dtype=torch.float32)
    hd = dim // heads
    off = 0

    def take(*shape):
        nonlocal off
        n = 1
        for s in shape:
            n *= s
        t = w[off:off + n].view(*shape)
        off += n
        return t
    P = {"embed": take(vocab, dim)}
    an = take(layers, dim)
    wq = take(layers, dim, dim)
    wk = take(layers, kv * hd, dim)
    wv = take(layers, kv * hd, dim)
    wo = take(layers, dim, dim)
    fn = take(layers, dim)
    w1 = take(layers, hidden, dim)
    w2 = take(layers, dim, hidden)
    w3 = take(layers, hidden, dim)
    P["norm"] = take(dim)
    take(seq, hd)  # freq_cis_real, freq_cis_imag
    P["output"] = P["embed"] if shared else take(vocab, dim)
    P["layers"] = [dict(an=an[i], q=wq[i], k=wk[i], v=wv[i], o=wo[i], fn=fn[i],
                        gate=w1[i], down=w2[i], up=w3[i]) for i in range(layers)]
    cfg = dict(dim=dim, heads=heads, kv=kv, vocab=vocab, eps=1e-5, theta=10000.0, interleaved=True)
    return cfg, P


def read_safetensors(path, out):
    dt = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            f.seek(base + a)
            t = torch.frombuffer(bytearray(f.read(b - a)), dtype=dt[info["dtype"]])
            out[name] = t.view(*info["shape"]).float()


def load_hf(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    T = {}
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".safetensors"):
            read_safetensors(os.path.join(d, fn), T)
    L = cfg["num_hidden_layers"]
    P = {"embed": T["model.embed_tokens.weight"], "norm": T["model.norm.weight"]}
    P["output"] = T.get("lm_head.weight", P["embed"])
    P["layers"] = []
    for i in range(L):
        p = f"model.layers.{i}."
        P["layers"].append(dict(an=T[p + "input_layernorm.weight"], fn=T[p + "post_attention_layernorm.weight"],
                                q=T[p + "self_attn.q_proj.weight"], k=T[p + "self_attn.k_proj.weight"],
                                v=T[p + "self_attn.v_proj.weight"], o=T[p + "self_attn.o_proj.weight"],
                                gate=T[p + "mlp.gate_proj.weight"], up=T[p + "mlp.up_proj.weight"],
                                down=T[p + "mlp.down_proj.weight"]))
    c = dict(dim=cfg["hidden_size"], heads=cfg["num_attention_heads"],
             kv=cfg.get("num_key_value_heads", cfg["num_attention_heads"]), vocab=cfg["vocab_size"],
             eps=cfg.get("rms_norm_eps", 1e-5), theta=cfg.get("rope_theta", 10000.0), interleaved=False)
    return c, P


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin, interleaved):
    B, T, H, hd = x.shape
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    if interleaved:
        xp = x.view(B, T, H, hd // 2, 2)
        a, b = xp[..., 0], xp[..., 1]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).view(B, T, H, hd)
    a, b = x[..., : hd // 2], x[..., hd // 2:]
    return torch.cat((a * c - b * s, a * s + b * c), dim=-1)


@torch.no_grad()
def forward(cfg, P, tokens, cos, sin):
    B, T = tokens.shape
    D, H, KV = cfg["dim"], cfg["heads"], cfg["kv"]
    hd = D // H
    x = P["embed"][tokens]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for L in P["layers"]:
        h = rmsnorm(x, L["an"], cfg["eps"])
        q = rope((h @ L["q"].t()).view(B, T, H, hd), cos, sin, cfg["interleaved"])
        k = rope((h @ L["k"].t()).view(B, T, KV, hd), cos, sin, cfg["interleaved"])
        v = (h @ L["v"].t()).view(B, T, KV, hd)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if KV != H:
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
        att = (q @ k.transpose(-1, -2)) / hd ** 0.5 + mask
        o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + o @ L["o"].t()
        h = rmsnorm(x, L["fn"], cfg["eps"])
        x = x + (F.silu(h @ L["gate"].t()) * (h @ L["up"].t())) @ L["down"].t()
    return rmsnorm(x, P["norm"], cfg["eps"]) @ P["output"].t()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    cfg, P = load_hf(a.model) if os.path.isdir(a.model) else load_llama2c(a.model)
    hd = cfg["dim"] // cfg["heads"]
    i = torch.arange(hd // 2, dtype=torch.float64)
    ang = torch.arange(a.seq, dtype=torch.float64)[:, None] * cfg["theta"] ** (-2 * i / hd)[None, :]
    cos, sin = torch.cos(ang).float(), torch.sin(ang).float()
    V = cfg["vocab"]
    tokens = (torch.arange(a.batch * a.seq, dtype=torch.int64) * 7919 % V).view(a.batch, a.seq)
    logits = forward(cfg, P, tokens, cos, sin)  # warm-up and NLL check
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1)).item()
    times = []
    c0 = time.process_time()
    for _ in range(a.reps):
        t0 = time.perf_counter()
        forward(cfg, P, tokens, cos, sin)
        times.append(time.perf_counter() - t0)
    cpu = time.process_time() - c0
    s = statistics.median(times)
    n = a.batch * a.seq
    print(json.dumps({"model": a.model, "batch": a.batch, "seq": a.seq, "tokens_per_s": n / s,
                      "tokens_per_s_cpu": n * a.reps / (cpu / torch.get_num_threads()),
                      "step_s": s, "nll": nll, "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    sys.exit(main())
