#!/usr/bin/env bash
# Two spheres against one on the same global batch: `cllm train` tokens/s (the run's median step)
# in interleaved rounds, the ratio per round and the median, and for every sphere the fraction of
# the step it spends outside compute (1 - (forward+backward+fold) / wall time of the steps).
#
#   bash bench/two-spheres.sh [--build DIR] [--corpus FILE] [--rounds N] [--steps N]
#                             [--micro-batch N] [--extra "more cllm train options"]
#
# Needs a corpus (default data/kjv.txt: bash tools/get-default-corpus.sh). Not part of CI. On a
# shared machine hold a lock around it (e.g. `flock -x /work/cpu.lock bash bench/two-spheres.sh`).
set -euo pipefail
build=build corpus=data/kjv.txt rounds=3 steps=40 micro=2 extra=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --corpus) corpus=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --micro-batch) micro=$2; shift 2 ;;
    --extra) extra=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "two-spheres.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$build/cllm" ] || { echo "two-spheres.sh: $build/cllm not found" >&2; exit 2; }
[ -f "$corpus" ] || { echo "two-spheres.sh: corpus $corpus not found" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Runs `cllm train` with $1 spheres; prints "tokens/s outside-fraction-per-sphere..."
run() {
  local dir="$tmp/r$1-$RANDOM"
  # shellcheck disable=SC2086
  "$build/cllm" train --corpus "$corpus" --model small --batch 16 --context 128 \
    --micro-batch "$micro" --steps "$steps" --spheres "$1" --threads "$1" --run-dir "$dir" \
    --progress plain --sample-tokens 0 --eval-every 0 --eval-windows 1 --checkpoint-every 0 \
    $extra > /dev/null
  python3 - "$dir" <<'EOF'
import json, sys
d = sys.argv[1]
tps = json.load(open(d + "/summary.json"))["tokens_per_s"]
wall = sum(json.loads(l)["step_ms"] for l in open(d + "/metrics.jsonl"))
out = ["%.0f" % tps]
for s in json.load(open(d + "/spheres.json")):
    out.append("%.3f" % (1 - (s["compute_ms"] + s["fold_ms"]) / wall))
print(" ".join(out))
EOF
}

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
echo "cllm train: small, batch 16x128, micro-batch $micro, $steps steps; tokens/s = the run's median step"
printf "%-6s %12s %12s %7s   %s\n" round "1 sphere" "2 spheres" ratio "outside compute: 1 sphere | 2 spheres (sphere 0, 1)"
ratios=()
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then one=$(run 1); two=$(run 2); else two=$(run 2); one=$(run 1); fi
  read -r t1 o1 <<< "$one"
  read -r t2 o20 o21 <<< "$two"
  ratio=$(awk -v a="$t2" -v b="$t1" 'BEGIN{printf "%.2f", a/b}')
  ratios+=("$ratio")
  printf "%-6s %12s %12s %7s   %s | %s %s\n" "$r" "$t1" "$t2" "$ratio" "$o1" "$o20" "$o21"
done
printf "median ratio %s\n" "$(printf "%s\n" "${ratios[@]}" | sort -g | awk '{v[NR]=$1} END{print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}')"
