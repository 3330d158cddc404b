#!/usr/bin/python3
"""Writes a Hugging Face GPT-2 folder with random weights, as transformers would save one.

config.json (GPT2LMHeadModel, gelu_new, tied LM head) and model.safetensors (F32, little-endian,
__metadata__ {"format": "pt"}), the weights drawn with PyTorch from --seed: matrices N(0, 0.02),
biases N(0, 0.02), LayerNorm gains 1 + N(0, 0.1). Conv1D weights are [in, out], as transformers
stores them. The safetensors layout is written with the standard library (the safetensors
package is not needed). Used by tests/e2e/test_gpt2.cpp to give `cllm import` and
`cllm train --init-from` a GPT-2 folder that cllm did not write.

--hub-names writes the names the files on the Hugging Face Hub use ("h.0.attn.c_attn.weight",
no "transformer." prefix) with the causal-mask buffers ("h.N.attn.bias") older transformers
saved; --dtype bf16 stores every tensor as BF16.

Usage: /usr/bin/python3 tools/make_hf_gpt2.py OUT_DIR --vocab 300 --d 32 --layers 2 --heads 4
       --context 64 [--seed 1] [--hub-names] [--dtype f32|bf16]
Needs Debian's python3-torch.
"""
import argparse
import json
import os
import struct

import torch


def tensors(args):
    g = torch.Generator().manual_seed(args.seed)
    d, V, T = args.d, args.vocab, args.context

    def normal(*shape, std=0.02):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * std

    out = {"wte.weight": normal(V, d), "wpe.weight": normal(T, d)}
    for i in range(args.layers):
        p = f"h.{i}."
        out.update({
            p + "ln_1.weight": 1 + normal(d, std=0.1), p + "ln_1.bias": normal(d),
            p + "attn.c_attn.weight": normal(d, 3 * d), p + "attn.c_attn.bias": normal(3 * d),
            p + "attn.c_proj.weight": normal(d, d), p + "attn.c_proj.bias": normal(d),
            p + "ln_2.weight": 1 + normal(d, std=0.1), p + "ln_2.bias": normal(d),
            p + "mlp.c_fc.weight": normal(d, 4 * d), p + "mlp.c_fc.bias": normal(4 * d),
            p + "mlp.c_proj.weight": normal(4 * d, d), p + "mlp.c_proj.bias": normal(d),
        })
        if args.hub_names:
            out[p + "attn.bias"] = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
    out["ln_f.weight"] = 1 + normal(d, std=0.1)
    out["ln_f.bias"] = normal(d)
    prefix = "" if args.hub_names else "transformer."
    return {prefix + k: v for k, v in out.items()}


def write_safetensors(path, named, dtype):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(named):
        t = named[name].contiguous()
        if dtype == "bf16":
            # The upper half of each float32 (round to nearest even), as torch's bfloat16 is.
            raw = t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
            st_dtype = "BF16"
        else:
            raw = t.numpy().astype("<f4").tobytes()
            st_dtype = "F32"
        header[name] = {"dtype": st_dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--d", type=int, required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--context", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hub-names", action="store_true")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": args.vocab, "n_positions": args.context, "n_ctx": args.context,
        "n_embd": args.d, "n_layer": args.layers, "n_head": args.heads, "n_inner": None,
        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
        "scale_attn_weights": True, "tie_word_embeddings": True,
        "bos_token_id": 50256, "eos_token_id": 50256, "torch_dtype": "float32",
    }
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    write_safetensors(os.path.join(args.out_dir, "model.safetensors"), tensors(args), args.dtype)


if __name__ == "__main__":
    main()
