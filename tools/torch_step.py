#!/usr/bin/python3
"""PyTorch side of bench/vs-pytorch.sh: the same training step as cllm-bench-step.

The model is the CLLM model of tools/make_golden.py (GPT-2 style, pre-LayerNorm, fused QKV with
bias, tanh GELU MLP 4d, tied LM head, no dropout), written here with PyTorch's own fused ops
(F.linear, F.layer_norm, F.gelu(approximate="tanh"), F.cross_entropy) so that PyTorch runs at
its best. One step = forward + backward over the batch, global-norm clipping and AdamW, exactly
what cllm-bench-step times (its exact-sum fold is extra work PyTorch does not do).

Data: pseudo-random byte windows (like cllm-bench-step's synthetic stream; the speed does not
depend on the values). Prints one line `torch_tokens_per_s=<median>` last, and which OpenBLAS
kernel is in use.

Usage: /usr/bin/python3 tools/torch_step.py [--model small] [--batch 16] [--context 128]
       [--steps 10] [--warmup 2] [--threads 1] [--d-model D --layers L --heads H]
--d-model/--layers/--heads override the preset, as cllm-bench-step's do; the model's context
grows to --context (the GPT-2 body: --model small --d-model 768 --layers 12 --heads 12
--context 1024). `gpt2` has GPT-2's vocabulary of 50257 tokens in an embedding padded to 50304
rows, as cllm pads it (llm.c does the same), so both sides do the same LM-head products; the
data draws from the 50257 real tokens.
Needs Debian's python3-torch (1.13); nothing else.
"""

import argparse
import ctypes
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

PRESETS = {  # name: (vocab, d_model, layers, n_heads, context), as src/config.cpp
    "tiny": (256, 64, 2, 2, 64),
    "small": (256, 128, 4, 4, 128),
    "base": (256, 256, 6, 8, 256),
    "gpt2": (50257, 768, 12, 12, 1024),
    "gpt2-medium": (50257, 1024, 24, 16, 1024),
}


def padded_vocab(name, vocab):
    """The embedding's rows: GPT-2's vocabulary rounded up to 128, as src/config.cpp."""
    return (vocab + 127) // 128 * 128 if name.startswith("gpt2") else vocab


class Block(torch.nn.Module):
    def __init__(self, d, heads, layers):
        super().__init__()
        self.h = heads
        self.ln_1 = torch.nn.LayerNorm(d)
        self.c_attn = torch.nn.Linear(d, 3 * d)
        self.c_proj = torch.nn.Linear(d, d)
        self.ln_2 = torch.nn.LayerNorm(d)
        self.c_fc = torch.nn.Linear(d, 4 * d)
        self.c_proj2 = torch.nn.Linear(4 * d, d)
        for lin in (self.c_attn, self.c_proj, self.c_fc, self.c_proj2):
            torch.nn.init.normal_(lin.weight, std=0.02)
            torch.nn.init.zeros_(lin.bias)
        for lin in (self.c_proj, self.c_proj2):  # GPT-2: residual projections scaled
            torch.nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * layers))

    def forward(self, x, mask):
        B, T, d = x.shape
        hd = d // self.h
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q = q.view(B, T, self.h, hd).transpose(1, 2)
        k = k.view(B, T, self.h, hd).transpose(1, 2)
        v = v.view(B, T, self.h, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = att.masked_fill(mask[:T, :T], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, d)
        x = x + self.c_proj(y)
        return x + self.c_proj2(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class CLLM(torch.nn.Module):
    def __init__(self, vocab, d, layers, heads, context):
        super().__init__()
        self.wte = torch.nn.Embedding(vocab, d)
        self.wpe = torch.nn.Embedding(context, d)
        torch.nn.init.normal_(self.wte.weight, std=0.02)
        torch.nn.init.normal_(self.wpe.weight, std=0.02)
        self.blocks = torch.nn.ModuleList([Block(d, heads, layers) for _ in range(layers)])
        self.ln_f = torch.nn.LayerNorm(d)
        mask = torch.ones(context, context, dtype=torch.bool).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.blocks:
            x = b(x, self.mask)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied LM head
        return F.cross_entropy(logits.view(B * T, -1), targets.reshape(-1))


def openblas_kernel():
    """The OpenBLAS core type in use (from the library that this process loaded), or why not."""
    with open("/proc/self/maps") as f:
        libs = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            return "%s (%s; %s)" % (lib.openblas_get_corename().decode(), path,
                                    lib.openblas_get_config().decode())
        except (OSError, AttributeError):
            continue
    return "no OpenBLAS loaded (BLAS: %s)" % torch.__config__.show().replace("\n", " ")[:200]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--d-model", type=int, default=0)
    ap.add_argument("--layers", type=int, default=0)
    ap.add_argument("--heads", type=int, default=0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    vocab, d, layers, heads, context = PRESETS[a.model]
    d, layers, heads = a.d_model or d, a.layers or layers, a.heads or heads
    context = max(context, a.context)
    model = CLLM(padded_vocab(a.model, vocab), d, layers, heads, context)
    # Decay on 2-D weights only, as src/optimizer.cpp.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}], lr=a.lr,
                            betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(0x5EED5EED)
    data = torch.randint(0, vocab, (a.warmup + a.steps, a.batch, a.context + 1), generator=gen)

    times = []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(data[s, :, :-1], data[s, :, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if s >= a.warmup:
            times.append(dt)
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    tps = a.batch * a.context / med
    print("torch %s, %d thread(s), OPENBLAS_CORETYPE=%s" %
          (torch.__version__, torch.get_num_threads(), os.environ.get("OPENBLAS_CORETYPE", "")))
    print("openblas kernel: %s" % openblas_kernel())
    print("model %s (vocab %d, d %d, %d layers, %d heads) batch %dx%d: median step %.2f ms "
          "over %d steps, loss %.4f" %
          (a.model, vocab, d, layers, heads, a.batch, a.context, med * 1e3, n, loss.item()))
    print("torch_tokens_per_s=%.1f" % tps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
