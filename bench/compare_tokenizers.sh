#!/usr/bin/env bash
# The byte tokenizer against a byte-level BPE at the same training wall time (issue 10, item 4).
# For each tokenizer: a short calibration run measures tokens/s, then a run of as many steps as
# fit in SECONDS (its own full learning-rate schedule) ends with a validation pass over the whole
# held-out tail; the table gives the training time, tokens and bytes seen, validation bits per
# byte, and the sample of each run (about the same number of bytes).
# Usage: bench/compare_tokenizers.sh [SECONDS=150] [VOCAB=4096] [OUT=runs/tokenizer-quality]
# Run it alone on the machine (e.g. under `flock -x /work/cpu.lock`): the wall times compare.
set -euo pipefail
seconds=${1:-150}
vocab=${2:-4096}
out=${3:-runs/tokenizer-quality}
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/build/cllm"
common=(--model small --corpus "$root/data/kjv.txt" --batch 16 --micro-batch 2 --progress plain
  --checkpoint-every 0 --eval-every 0 --eval-windows 0 --prompt "And God said")
mkdir -p "$out"
json() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

for tok in byte "bpe:$vocab"; do
  name=${tok/:/}
  rm -rf "$out/cal-$name" "$out/$name"
  "$bin" train "${common[@]}" --tokenizer "$tok" --steps 40 --warmup 4 --sample-tokens 0 \
    --run-dir "$out/cal-$name" > /dev/null
  tps=$(json "$out/cal-$name/summary.json" "['tokens_per_s']")
  steps=$(/usr/bin/python3 -c "print(max(10, int($seconds * $tps / (16 * 128))))")
  # About 400 bytes of sample text either way.
  bpt=$([ "$tok" = byte ] && echo 1 || echo 3.8)
  sample=$(/usr/bin/python3 -c "print(int(400 / $bpt))")
  echo "== $tok: $tps tokens/s in calibration -> $steps steps"
  "$bin" train "${common[@]}" --tokenizer "$tok" --steps "$steps" --sample-tokens "$sample" \
    --run-dir "$out/$name" > "$out/$name.log"
done

/usr/bin/python3 - "$out" "$vocab" << 'EOF'
import json, sys
out, vocab = sys.argv[1], sys.argv[2]
print(f"\n{'tokenizer':<10} {'steps':>6} {'train s':>8} {'tokens/s':>9} {'tokens seen':>12} "
      f"{'bytes seen':>11} {'val loss':>9} {'val bpb':>8}")
for name in ["byte", "bpe" + vocab]:
    s = json.load(open(f"{out}/{name}/summary.json"))
    rows = [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl")]
    c = json.load(open(f"{out}/{name}/config.json"))
    train_s = sum(r["step_ms"] for r in rows) / 1e3
    tokens = s["steps"] * 16 * 128
    bpt = 1.0 if name == "byte" else None
    if bpt is None:
        # bytes per token of the training split, from its size and token count
        import os
        total = os.path.getsize(c["extra"]["corpus"]) + 0.0
        bpt = total * (1 - c["extra"]["val_fraction"]) / c["train_tokens"]
    print(f"{name:<10} {s['steps']:>6} {train_s:>8.1f} {s['tokens_per_s']:>9.0f} {tokens:>12,} "
          f"{tokens * bpt:>11,.0f} {s['val_loss']:>9.4f} {s['val_bpb']:>8.4f}")
for name in ["byte", "bpe" + vocab]:
    print(f"\n--- sample of {name} ---\n" + open(f"{out}/{name}/sample.txt", errors="replace").read())
EOF
