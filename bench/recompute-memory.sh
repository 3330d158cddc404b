#!/usr/bin/env bash
# What --recompute saves and costs at the GPT-2 body: peak RSS (/usr/bin/time -v, the whole run)
# and the step times (metrics.jsonl) of `cllm train` with and without it, for each sphere count,
# interleaved rounds; with the weights hash of each run (they must agree).
#
#   bash bench/recompute-memory.sh [--build DIR] [--rounds 2] [--spheres "1 4"] [--steps 3]
#                                  [--corpus data/kjv.txt] [--dir /tmp/cllm-recompute]
#
# Not part of CI: each run is a few GPT-2-body steps (several seconds per sequence per core).
set -euo pipefail

build=build rounds=2 spheres="1 4" steps=3 corpus=data/kjv.txt dir=/tmp/cllm-recompute
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --spheres) spheres=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --corpus) corpus=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "recompute-memory.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
cllm="$build/cllm"
[ -x "$cllm" ] || { echo "recompute-memory.sh: $cllm not found (build first, or --build DIR)" >&2; exit 2; }
[ -f "$corpus" ] || { echo "recompute-memory.sh: corpus $corpus not found" >&2; exit 2; }
mkdir -p "$dir"
trap 'rm -rf "$dir/run"' EXIT
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for round in $(seq 1 "$rounds"); do
  for n in $spheres; do
    for mode in kept recompute; do
      extra=()
      [ "$mode" = recompute ] && extra=(--recompute)
      rm -rf "$dir/run"
      /usr/bin/time -v -o "$dir/time.txt" timeout 3600 "$cllm" train --corpus "$corpus" \
        --d-model 768 --layers 12 --heads 12 --context 1024 --batch "$n" --micro-batch 1 \
        --spheres "$n" --threads "$n" --steps "$steps" --eval-every 1000 --checkpoint-every 1000 \
        --sample-tokens 0 --eval-windows 2 --run-dir "$dir/run" --progress plain "${extra[@]}" \
        > "$dir/out.txt" 2> "$dir/err.txt"
      rss=$(awk '/Maximum resident/ {print $NF}' "$dir/time.txt")
      ms=$(python3 -c "import json,sys; print(' '.join('%.0f' % json.loads(l)['step_ms'] for l in open(sys.argv[1]) if 'step_ms' in l))" "$dir/run/metrics.jsonl")
      sha=$(awk '/weights sha256/ {print substr($NF, 1, 16)}' "$dir/out.txt")
      echo "round $round | spheres $n | $mode | peak RSS $rss kB | step ms $ms | weights $sha"
    done
  done
done
