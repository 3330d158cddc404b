#!/usr/bin/env bash
# Spheres across processes against one process, on this machine, over loopback: one process with
# 2 spheres (2 threads) against a root with 1 sphere (1 thread) plus one node with 1 sphere
# (1 thread), the same global batch, interleaved rounds. Prints tokens/s, the ratio, bytes per
# step each way and the network ms per step (from summary.json).
#   bench/bench_remote.sh [BUILD_DIR] [ROUNDS] [STEPS] [extra cllm train options...]
set -euo pipefail
build=${1:-build}; rounds=${2:-3}; steps=${3:-60}; shift $(( $# < 3 ? $# : 3 ))
bin="$build/cllm"
work=$(mktemp -d); trap 'rm -rf "$work"; pkill -P $$ 2>/dev/null || true' EXIT
common=(--steps "$steps" --eval-every 0 --sample-tokens 0 --checkpoint-every 0 --progress plain "$@")
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
printf "%-6s %12s %12s %7s %14s %14s %12s\n" round "1 proc tok/s" "2 proc tok/s" ratio \
  "bytes down/step" "bytes up/step" "network ms"
ratios=()
for r in $(seq 1 "$rounds"); do
  timeout 600 "$bin" train "${common[@]}" --spheres 2 --threads 2 --run-dir "$work/one$r" > /dev/null
  one=$(field "$work/one$r/summary.json" tokens_per_s)
  timeout 600 "$bin" train "${common[@]}" --spheres 1 --threads 1 --run-dir "$work/two$r" \
    --listen 127.0.0.1:0 --min-nodes 1 > "$work/root$r.out" &
  root=$!
  for _ in $(seq 1 200); do grep -q "listening for nodes" "$work/root$r.out" 2>/dev/null && break; sleep 0.05; done
  port=$(grep -o "127.0.0.1:[0-9]*" "$work/root$r.out" | head -1 | cut -d: -f2)
  timeout 600 "$bin" node --join "127.0.0.1:$port" --spheres 1 --threads 1 > /dev/null 2>&1 &
  wait $root
  wait
  two=$(field "$work/two$r/summary.json" tokens_per_s)
  s=$(field "$work/two$r/summary.json" steps)
  down=$(( $(field "$work/two$r/summary.json" bytes_sent) / s ))
  up=$(( $(field "$work/two$r/summary.json" bytes_received) / s ))
  net=$(field "$work/two$r/summary.json" network_ms_median)
  ratio=$(python3 -c "print(f'{$two/$one:.3f}')")
  ratios+=("$ratio")
  printf "%-6s %12.0f %12.0f %7s %14s %14s %12.2f\n" "$r" "$one" "$two" "$ratio" "$down" "$up" "$net"
done
python3 -c "import statistics,sys; print('median ratio', statistics.median(map(float, sys.argv[1:])))" "${ratios[@]}"
