#!/usr/bin/env bash
# cllm against PyTorch 1.13 at GPT-2 sizes (issue 18): the GPT-2 body (d 768, 12 layers, 12 heads,
# context 1024, byte vocabulary) and `gpt2` (GPT-2's vocabulary, 50257 padded to 50304 on both
# sides), batch 4 x 1024, cllm micro-batch 1, one core, interleaved rounds (bench/vs-pytorch.sh
# does the timing; this only fixes the shapes). cllm's bf16 products are timed too, in the same
# rounds against the same PyTorch run, where the CPU has AVX512_BF16.
#
#   bash bench/vs-pytorch-gpt2.sh [--shapes body,gpt2] [--rounds 3] [--steps 2] [--warmup 1]
#                                 [other bench/vs-pytorch.sh options, e.g. --cpu 0 --build DIR]
#
# A step is ~4,096 tokens, tens of seconds on one core: a round of both shapes takes ~10 minutes.
set -euo pipefail

shapes=body,gpt2 pass=(--rounds 3 --steps 2 --warmup 1)
while [ $# -gt 0 ]; do
  case "$1" in
    --shapes) shapes=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) pass+=("$1"); [ $# -gt 1 ] && { pass+=("$2"); shift; }; shift ;;
  esac
done

precision=fp32
grep -m1 '^flags' /proc/cpuinfo | grep -qw avx512_bf16 && precision=fp32,bf16
here=$(cd "$(dirname "$0")" && pwd)
common=(--batch 4 --micro-batch 1 --context 1024 --precision "$precision")
IFS=, read -r -a list <<<"$shapes"
for s in "${list[@]}"; do
  case "$s" in
    body) echo "== GPT-2 body (byte vocabulary)"
          bash "$here/vs-pytorch.sh" --model small --d-model 768 --layers 12 --heads 12 \
            "${common[@]}" "${pass[@]}" ;;
    gpt2) echo "== gpt2 (vocabulary 50257, padded to 50304)"
          bash "$here/vs-pytorch.sh" --model gpt2 "${common[@]}" "${pass[@]}" ;;
    *) echo "vs-pytorch-gpt2.sh: unknown shape '$s' (body, gpt2)" >&2; exit 2 ;;
  esac
  echo
done
