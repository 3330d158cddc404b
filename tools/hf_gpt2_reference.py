#!/usr/bin/python3
"""An independent GPT-2 (PyTorch) that loads an exported Hugging Face folder and prints logits.

Reads HF_DIR/config.json and HF_DIR/model.safetensors exactly as transformers' GPT2LMHeadModel
would find them (the safetensors layout parsed here with the standard library and numpy), checks
the names, shapes and metadata a GPT2LMHeadModel state dict has, and runs GPT-2's forward pass in
float64 with torch:

  h = wte[ids] + wpe[positions]
  per block: h += attn.c_proj(causal_softmax(q k^T / sqrt(head_dim)) v), q|k|v = attn.c_attn(ln_1(h))
             h += mlp.c_proj(gelu_new(mlp.c_fc(ln_2(h))))
  logits = ln_f(h) @ wte^T            (tied LM head)

Conv1D weights are [in, out] (y = x @ W + b), as in transformers' GPT-2. Nothing here comes from
cllm's own code: the export test (tests/e2e/test_export.cpp) compares these logits with cllm's.

Usage: /usr/bin/python3 tools/hf_gpt2_reference.py HF_DIR --ids 10,72,101,...
Prints one JSON line: {"logits": [[vocab floats] per position]}.
Needs Debian's python3-torch (and python3-numpy, which it depends on).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch


def load_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise SystemExit(f"{name}: dtype {info['dtype']}, expected F32")
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"])
        tensors[name] = torch.from_numpy(arr.astype(np.float64))
    return meta, tensors


def expected_shapes(cfg):
    d, V, T, L = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"], cfg["n_layer"]
    inner = cfg.get("n_inner") or 4 * d
    shapes = {"transformer.wte.weight": [V, d], "transformer.wpe.weight": [T, d],
              "transformer.ln_f.weight": [d], "transformer.ln_f.bias": [d]}
    for i in range(L):
        p = f"transformer.h.{i}."
        shapes.update({
            p + "ln_1.weight": [d], p + "ln_1.bias": [d],
            p + "attn.c_attn.weight": [d, 3 * d], p + "attn.c_attn.bias": [3 * d],
            p + "attn.c_proj.weight": [d, d], p + "attn.c_proj.bias": [d],
            p + "ln_2.weight": [d], p + "ln_2.bias": [d],
            p + "mlp.c_fc.weight": [d, inner], p + "mlp.c_fc.bias": [inner],
            p + "mlp.c_proj.weight": [inner, d], p + "mlp.c_proj.bias": [d],
        })
    return shapes


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def forward(cfg, W, ids):
    d, H, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    hd = d // H
    eps = cfg["layer_norm_epsilon"]
    T = len(ids)
    idx = torch.tensor(ids, dtype=torch.long)
    h = W["transformer.wte.weight"][idx] + W["transformer.wpe.weight"][:T]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    for i in range(L):
        p = f"transformer.h.{i}."
        a = layer_norm(h, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        qkv = a @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(d, dim=-1)
        q, k, v = (t.view(T, H, hd).transpose(0, 1) for t in (q, k, v))  # [H, T, hd]
        att = q @ k.transpose(-1, -2)
        if cfg.get("scale_attn_weights", True):
            att = att / math.sqrt(hd)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(0, 1).reshape(T, d)
        h = h + y @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        m = layer_norm(h, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
        m = gelu_new(m @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        h = h + m @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    h = layer_norm(h, W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], eps)
    return h @ W["transformer.wte.weight"].T


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("hf_dir")
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    args = ap.parse_args()
    cfg = json.load(open(os.path.join(args.hf_dir, "config.json")))
    if cfg.get("model_type") != "gpt2" or "GPT2LMHeadModel" not in cfg.get("architectures", []):
        raise SystemExit("config.json is not a GPT2LMHeadModel")
    if cfg.get("activation_function") != "gelu_new":
        raise SystemExit(f"activation {cfg.get('activation_function')}, expected gelu_new")
    if not cfg.get("tie_word_embeddings", True):
        raise SystemExit("the LM head is expected to be tied to wte")
    meta, W = load_safetensors(os.path.join(args.hf_dir, "model.safetensors"))
    if meta.get("format") != "pt":
        raise SystemExit(f"__metadata__ format {meta.get('format')!r}, expected 'pt'")
    want = expected_shapes(cfg)
    missing = sorted(set(want) - set(W))
    extra = sorted(set(W) - set(want))
    if missing or extra:
        raise SystemExit(f"state dict differs from GPT2LMHeadModel: missing {missing}, extra {extra}")
    for name, shape in want.items():
        if list(W[name].shape) != shape:
            raise SystemExit(f"{name}: shape {list(W[name].shape)}, expected {shape}")
    ids = [int(x) for x in args.ids.split(",") if x]
    if not ids or len(ids) > cfg["n_positions"] or min(ids) < 0 or max(ids) >= cfg["vocab_size"]:
        raise SystemExit("ids must be 1..n_positions ids in [0, vocab_size)")
    with torch.no_grad():
        logits = forward(cfg, W, ids)
    json.dump({"logits": logits.tolist()}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
