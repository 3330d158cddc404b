#!/usr/bin/python3
"""Reference values for the CLLM golden test (tests/core/test_golden.cpp).

Builds a fixed tiny GPT-2 style model from scratch in PyTorch (plain float64 tensors and
torch ops, no GPT library), computes the SUMMED next-token cross-entropy over a fixed random
batch and its gradient with autograd, and writes everything to
tests/fixtures/golden_tiny.json.

The model is the one of the design document (section "The model (CLLM)"), implemented in src/model.cpp:
  token embedding wte [V, d] + learned positions wpe [T, d]
  -> `layers` pre-LayerNorm blocks:
       x = x + attn.c_proj(causal_mha(ln_1(x)))
       x = x + mlp.c_proj(gelu_tanh(mlp.c_fc(ln_2(x))))
  -> ln_f -> logits = x @ wte^T (tied LM head).
Linear layers use GPT-2's Conv1D convention: weight stored [in, out], y = x @ W + b.
The fused QKV projection's output columns are q = [0, d), k = [d, 2d), v = [2d, 3d); head h
uses columns [h*hd, (h+1)*hd) of each. LayerNorm: eps 1e-5, biased variance. GELU: tanh form.
Loss: SUM over all batch*context tokens of -log softmax(logits)[target] (natural log).

Sizes: vocab 37, d_model 16, 2 layers, 2 heads, context 8, batch 3 sequences of the whole context
(so every row of wpe is used and gets a gradient).
Each token row holds context + 1 ids: inputs = row[0:context], targets = row[1:context+1].

Initialisation (not GPT-2's: large enough that every path carries a non-trivial gradient):
weights N(0, 0.3^2), biases N(0, 0.1^2), LayerNorm gains 1 + 0.1 N(0, 1), LayerNorm biases
N(0, 0.1^2). Parameter names, shapes and order are exactly those of src/params.cpp; values are
stored flat, row-major, as Python repr floats (full double precision).

Regenerate (only needed if the model definition changes; CI never runs this script):
    cd <repo root> && /usr/bin/python3 tools/make_golden.py
It needs PyTorch (Debian's python3-torch 1.13 works) and is fully deterministic (fixed seed,
CPU, float64), so rerunning it reproduces the same file.
"""

import json
import math
import os
import sys

import torch

VOCAB, D_MODEL, N_LAYERS, N_HEADS, CONTEXT = 37, 16, 2, 2, 8
BATCH, BATCH_CONTEXT = 3, 8  # a batch's sequences: at most CONTEXT
SEED = 20240611
LN_EPS = 1e-5

DTYPE = torch.float64


def param_specs():
    """(name, shape) in the exact order of src/params.cpp."""
    d, V, T = D_MODEL, VOCAB, CONTEXT
    specs = [("wte.weight", (V, d)), ("wpe.weight", (T, d))]
    for l in range(N_LAYERS):
        p = "h.%d." % l
        specs += [
            (p + "ln_1.weight", (d,)),
            (p + "ln_1.bias", (d,)),
            (p + "attn.c_attn.weight", (d, 3 * d)),
            (p + "attn.c_attn.bias", (3 * d,)),
            (p + "attn.c_proj.weight", (d, d)),
            (p + "attn.c_proj.bias", (d,)),
            (p + "ln_2.weight", (d,)),
            (p + "ln_2.bias", (d,)),
            (p + "mlp.c_fc.weight", (d, 4 * d)),
            (p + "mlp.c_fc.bias", (4 * d,)),
            (p + "mlp.c_proj.weight", (4 * d, d)),
            (p + "mlp.c_proj.bias", (d,)),
        ]
    specs += [("ln_f.weight", (d,)), ("ln_f.bias", (d,))]
    return specs


def init_params(gen):
    params = {}
    for name, shape in param_specs():
        z = torch.randn(shape, generator=gen, dtype=DTYPE)
        if "ln_" in name and name.endswith(".weight"):
            t = 1.0 + 0.1 * z
        elif name.endswith(".bias"):
            t = 0.1 * z
        else:
            t = 0.3 * z
        params[name] = t.requires_grad_(True)
    return params


def layer_norm(x, w, b):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased variance
    return (x - mean) / torch.sqrt(var + LN_EPS) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def attention(x, P, p):
    B, T, d = x.shape
    H, hd = N_HEADS, d // N_HEADS
    qkv = x @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]  # [B, T, 3d]
    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]

    def heads(t):  # [B, T, d] -> [B, H, T, hd], head h = columns h*hd..(h+1)*hd
        return t.reshape(B, T, H, hd).transpose(1, 2)

    q, k, v = heads(q), heads(k), heads(v)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)  # [B, H, T, T]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    att = torch.softmax(scores, dim=-1)
    y = (att @ v).transpose(1, 2).reshape(B, T, d)  # heads concatenated
    return y @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]


def mlp(x, P, p):
    h = gelu_tanh(x @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"])
    return h @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]


def forward(P, inputs):
    B, T = inputs.shape
    x = P["wte.weight"][inputs] + P["wpe.weight"][:T].unsqueeze(0)
    for l in range(N_LAYERS):
        p = "h.%d." % l
        x = x + attention(layer_norm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"]), P, p)
        x = x + mlp(layer_norm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"]), P, p)
    x = layer_norm(x, P["ln_f.weight"], P["ln_f.bias"])
    return x @ P["wte.weight"].t()  # [B, T, V]


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def main():
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    params = init_params(gen)
    tokens = torch.randint(0, VOCAB, (BATCH, BATCH_CONTEXT + 1), generator=gen, dtype=torch.int64)
    inputs, targets = tokens[:, :BATCH_CONTEXT], tokens[:, 1:]

    logits = forward(params, inputs)
    logp = torch.log_softmax(logits, dim=-1)
    loss_sum = -logp.gather(-1, targets.unsqueeze(-1)).sum()
    loss_sum.backward()

    out = {
        "description": "tools/make_golden.py: tiny CLLM model in float64, summed CE loss",
        "config": {
            "vocab": VOCAB,
            "d_model": D_MODEL,
            "layers": N_LAYERS,
            "n_heads": N_HEADS,
            "context": CONTEXT,
        },
        "context": BATCH_CONTEXT,
        "batch": BATCH,
        "tokens": [int(v) for v in tokens.reshape(-1).tolist()],
        "params": {name: flat(params[name]) for name, _ in param_specs()},
        "loss_sum": float(loss_sum.item()),
        "logits_first_row": flat(logits[0, 0]),
        "grads": {name: flat(params[name].grad) for name, _ in param_specs()},
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "tests", "fixtures", "golden_tiny.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)  # json writes floats with repr: full precision
        f.write("\n")
    print("wrote %s (%d bytes), loss_sum %r, mean loss %.6f (ln V = %.6f)" %
          (path, os.path.getsize(path), out["loss_sum"], out["loss_sum"] / (BATCH * BATCH_CONTEXT),
           math.log(VOCAB)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
