#!/usr/bin/python3
"""PyTorch peer for BenchmarkTrainStep (model/train_bench_test.go).

One MaskLLM-style training step on the CPU: forward and backward of a
LLaMA-architecture model over B sequences of T tokens with frozen weights and
a soft mask on every linear layer of every block (effective weight W * S),
computing dL/dS for every mask: the same work as Go's
m.LossGrad(..., GradOptions{MaskGrads: true}). With --full it also adds
MaskLLM's Gumbel-softmax mask construction from 6 logits per group of 4
weights and an AdamW step on the logits.

Tuned as ../shared/spec/benchmarking.md says (run it through
scripts/bench-train.sh, which also unsets OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE): one OpenBLAS thread per OpenMP thread, passive OpenMP
waiting, 2 torch threads, glibc mmap/trim thresholds raised so large buffers
are not re-faulted each step.

Weights are random: the speed of a step does not depend on their values.
Prints one JSON line: {"model", "tokens_per_s", "step_s", ...}.
"""
import argparse
import ctypes
import json
import math
import os
import statistics
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

import torch  # noqa: E402  (after the environment is set)
import torch.nn.functional as F  # noqa: E402

CONFIGS = {
    # dim, hidden, layers, heads, kv_heads, vocab
    "stories260K": (64, 172, 5, 8, 4, 512),
    "demo": (96, 256, 4, 6, 2, 512),
    "synthetic100M": (768, 2048, 12, 12, 4, 32000),
}


def rope_tables(T, hd, theta=10000.0):
    i = torch.arange(hd // 2, dtype=torch.float64)
    freq = theta ** (-2 * i / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def rope(x, cos, sin):
    # x [B, T, H, hd], interleaved pairs (2i, 2i+1) as GGUF/Meta weights
    B, T, H, hd = x.shape
    xp = x.view(B, T, H, hd // 2, 2)
    a, b = xp[..., 0], xp[..., 1]
    c = cos[None, :, None, :]
    s = sin[None, :, None, :]
    return torch.stack((a * c - b * s, a * s + b * c), dim=-1).view(B, T, H, hd)


def rmsnorm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


class Model:
    def __init__(self, cfg, seed=0):
        dim, hidden, layers, heads, kv, vocab = cfg
        g = torch.Generator().manual_seed(seed)
        hd = dim // heads
        self.cfg = cfg

        def w(o, i):
            return (torch.randn(o, i, generator=g) / math.sqrt(i)).float()

        self.embed = torch.randn(vocab, dim, generator=g) * 0.02
        self.norm = torch.ones(dim)
        self.layers = []
        for _ in range(layers):
            self.layers.append({
                "an": torch.ones(dim), "fn": torch.ones(dim),
                "q": w(dim, dim), "k": w(kv * hd, dim), "v": w(kv * hd, dim), "o": w(dim, dim),
                "gate": w(hidden, dim), "up": w(hidden, dim), "down": w(dim, hidden),
            })
        self.names = ["q", "k", "v", "o", "gate", "up", "down"]

    def linears(self):
        return [L[n] for L in self.layers for n in self.names]

    def loss(self, tokens, soft, T):
        dim, hidden, layers, heads, kv, vocab = self.cfg
        hd = dim // heads
        B = tokens.shape[0]
        inp, tgt = tokens[:, :T], tokens[:, 1:T + 1]
        cos, sin = rope_tables(T, hd)
        causal = torch.ones(T, T, dtype=torch.bool).triu(1)
        x = self.embed[inp]
        si = 0
        for L in self.layers:
            eff = {}
            for n in self.names:
                eff[n] = L[n] * soft[si]
                si += 1
            h = rmsnorm(x, L["an"])
            q = F.linear(h, eff["q"]).view(B, T, heads, hd)
            k = F.linear(h, eff["k"]).view(B, T, kv, hd)
            v = F.linear(h, eff["v"]).view(B, T, kv, hd)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            if kv != heads:
                k = k.repeat_interleave(heads // kv, dim=1)
                v = v.repeat_interleave(heads // kv, dim=1)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
            s = s.masked_fill(causal, float("-inf"))
            a = torch.softmax(s, dim=-1) @ v
            a = a.transpose(1, 2).reshape(B, T, dim)
            x = x + F.linear(a, eff["o"])
            h = rmsnorm(x, L["fn"])
            x = x + F.linear(F.silu(F.linear(h, eff["gate"])) * F.linear(h, eff["up"]), eff["down"])
        x = rmsnorm(x, self.norm)
        logits = F.linear(x, self.embed)
        return F.cross_entropy(logits.reshape(-1, vocab), tgt.reshape(-1))


CAND = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1],
                     [0, 1, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]], dtype=torch.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="stories260K", choices=sorted(CONFIGS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--full", action="store_true", help="add Gumbel-softmax masks and AdamW on the logits")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    m = Model(CONFIGS[args.model])
    vocab = CONFIGS[args.model][5]
    tokens = torch.randint(0, vocab, (args.batch, args.seq + 1))
    lins = m.linears()
    if args.full:
        logits = [torch.randn(w.numel() // 4, 6).mul_(0.01).requires_grad_() for w in lins]
        opt = torch.optim.AdamW(logits, lr=5e-4, betas=(0.9, 0.95), eps=1e-5, weight_decay=0.1)
    else:
        soft = [torch.rand_like(w).requires_grad_() for w in lins]

    def step():
        if args.full:
            opt.zero_grad(set_to_none=True)
            masks = []
            for lg, w in zip(logits, lins):
                u = torch.rand_like(lg).clamp_(1e-10, 1 - 1e-10)
                y = torch.softmax((100.0 * lg - torch.log(-torch.log(u))) / 4.0, dim=-1)
                masks.append((y @ CAND).view_as(w))
            loss = m.loss(tokens, masks, args.seq)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(logits, 1.0)
            opt.step()
        else:
            for s in soft:
                s.grad = None
            loss = m.loss(tokens, soft, args.seq)
            loss.backward()
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "model": args.model, "full": args.full,
                      "batch": args.batch, "seq": args.seq, "reps": args.reps, "step_s": med,
                      "tokens_per_s": args.batch * args.seq / med, "threads": torch.get_num_threads()}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
