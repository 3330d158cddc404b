#!/usr/bin/env bash
# The serial share of a step: the time on one thread while the others wait (merging partial sums,
# the optimizer), for two builds side by side, in interleaved rounds.
#
#   bash bench/serial-share.sh BEFORE_BUILD AFTER_BUILD [--corpus FILE] [--rounds N] [--steps N]
#
# Per run (`cllm train`, small, batch 16x128, micro-batch 2, W spheres on W threads), per step
# from metrics.jsonl: outside = step_ms - (compute_ms + fold_ms + optimizer_ms) / W, the part of
# the step not covered by shard work and the owners' optimizer work spread evenly over the W
# threads. At W = 2 that is the time in which at most one thread works (message hops, the norms'
# final sum, the loop's bookkeeping) plus imbalance; the
# serial share is median(outside at W=2) / median(step at W=1), and Amdahl's law with it predicts
# the speed-up on 16 cores. Not part of CI; on a shared machine the numbers are noisy: compare the
# two builds within a round.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,13p' "$0"; exit 2; }
before=$1 after=$2; shift 2
corpus=data/kjv.txt rounds=3 steps=30
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus) corpus=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    *) echo "serial-share.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
for b in "$before" "$after"; do
  [ -x "$b/cllm" ] || { echo "serial-share.sh: $b/cllm not found" >&2; exit 2; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run BUILD W -> "median_step_ms median_outside_ms"
run() {
  local dir="$tmp/r$RANDOM$RANDOM"
  timeout 900 "$1/cllm" train --corpus "$corpus" --model small --batch 16 --context 128 \
    --micro-batch 2 --steps "$steps" --spheres "$2" --threads "$2" --run-dir "$dir" \
    --progress plain --sample-tokens 0 --eval-every 0 --eval-windows 1 --checkpoint-every 0 \
    > /dev/null
  python3 - "$dir" "$2" <<'PY'
import json, statistics, sys
d, w = sys.argv[1], int(sys.argv[2])
rows = [json.loads(l) for l in open(d + "/metrics.jsonl")][3:]  # skip warm-up steps
step = statistics.median(r["step_ms"] for r in rows)
# The optimizer's per-slice work runs on every owner at once: parallel, like the shards' work
# (rows of builds before optimizer_ms counted it as serial).
out = statistics.median(
    r["step_ms"] - (r["compute_ms"] + r["fold_ms"] + r.get("optimizer_ms", 0)) / w for r in rows)
print("%.2f %.2f" % (step, out))
PY
}

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
printf "%-6s %-8s %10s %10s %12s %9s %8s\n" round build "1 sph ms" "2 sph ms" "outside@2 ms" serial% "16-core"
for r in $(seq 1 "$rounds"); do
  order=("$before" "$after")
  [ $((r % 2)) -eq 0 ] && order=("$after" "$before")
  for b in "${order[@]}"; do
    read -r s1 _ <<< "$(run "$b" 1)"
    read -r s2 o2 <<< "$(run "$b" 2)"
    name=after; [ "$b" = "$before" ] && name=before
    awk -v r="$r" -v n="$name" -v s1="$s1" -v s2="$s2" -v o2="$o2" 'BEGIN{
      f = o2 / s1; printf "%-6s %-8s %10.2f %10.2f %12.2f %9.2f %7.1fx\n", r, n, s1, s2, o2, 100*f, 1/(f+(1-f)/16)}'
  done
done
