#!/usr/bin/env bash
# A slow member: the root's sphere alone on core 0, a one-sphere node on core 1 shared with a busy
# loop (so it computes at about half speed), `small`, over loopback. Prints the median step time
# and the weights of each build, rounds alternated; the deal by measured pace should cut the step.
#   bench/slow-node.sh ROUNDS BUILD_DIR [BUILD_DIR...]   (each BUILD_DIR holds cllm; 2 cores)
set -euo pipefail
rounds=${1:-3}; shift
work=$(mktemp -d); busy=
trap 'rm -rf "$work"; [ -n "$busy" ] && kill "$busy" 2>/dev/null; pkill -P $$ 2>/dev/null || true' EXIT
common=(--steps 60 --eval-every 0 --sample-tokens 0 --checkpoint-every 0 --progress plain)
grep -m1 "model name" /proc/cpuinfo
for r in $(seq 1 "$rounds"); do
  for b in "$@"; do
    rm -rf "$work/run" "$work/root.out"
    taskset -c 1 bash -c 'while :; do :; done' & busy=$!
    timeout 300 taskset -c 0 "$b/cllm" train "${common[@]}" --spheres 1 --threads 1 \
      --run-dir "$work/run" --listen 127.0.0.1:0 --min-nodes 1 > "$work/root.out" 2>&1 &
    root=$!
    for _ in $(seq 1 200); do grep -q "listening for nodes" "$work/root.out" && break; sleep 0.05; done
    port=$(grep -o "127.0.0.1:[0-9]*" "$work/root.out" | head -1 | cut -d: -f2)
    timeout 300 taskset -c 1 "$b/cllm" node --join "127.0.0.1:$port" --spheres 1 --threads 1 \
      > /dev/null 2>&1 &
    wait "$root"; wait "$!" || true
    kill "$busy"; wait "$busy" 2>/dev/null || true; busy=
    python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(f'round {sys.argv[2]} {sys.argv[3]}: step_ms {s[\"step_ms_median\"]:.1f} tokens/s {s[\"tokens_per_s\"]:.0f} weights {s[\"weights_sha256\"][:16]}')" \
      "$work/run/summary.json" "$r" "$b"
  done
done
