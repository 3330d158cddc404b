#!/usr/bin/env bash
# What losing a node costs a running cluster, on this machine over loopback: a pure coordinator
# (--spheres 0) and two nodes of one sphere each train `small`; after step 15 one node gets
# SIGKILL (its connection closes: lost at once) or SIGSTOP (it hangs: lost by the step deadline
# or the heartbeat, whichever comes first). Its shards are dealt to the other node within the
# same step. Prints, per round, the faulted step's time minus the run's median step time (the
# recovery cost), and whether the run ended with the weights of one process.
#   bench/bench_node_loss.sh [BUILD_DIR] [ROUNDS] [extra cllm train options, e.g. --heartbeat-ms 200]
set -euo pipefail
build=${1:-build}; rounds=${2:-3}; shift $(( $# < 2 ? $# : 2 ))
bin="$build/cllm"
corpus="$(dirname "$0")/../data/kjv.txt"
[ -x "$bin" ] || { echo "bench_node_loss: $bin not found (build first)" >&2; exit 1; }
[ -s "$corpus" ] || { echo "bench_node_loss: $corpus missing (tools/get-default-corpus.sh)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
common=(--corpus "$corpus" --model small --steps 40 --eval-every 0 --sample-tokens 0
        --checkpoint-every 0 --progress plain "$@")

# The reference: the same run in one process.
timeout 600 "$bin" train "${common[@]}" --spheres 2 --threads 2 --run-dir "$work/ref" > "$work/ref.out"
ref=$(tail -1 "$work/ref.out")

cost() {  # run dir -> "faulted-step median-step cost-ms" for the step with a node_lost event
  python3 - "$1" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
med = statistics.median(r["step_ms"] for r in rows if r["step"] > 3)
lost = [r for r in rows if any(e["kind"] == "node_lost" for e in r.get("faults", {}).get("events", []))]
if not lost: print("- - -"); sys.exit()
r = lost[0]
print(r["step"], f'{med:.0f}', f'{r["step_ms"] - med:.0f}')
PY
}

printf "%-6s %-5s %6s %10s %12s %s\n" round fault step "median ms" "recovery ms" "weights as one process"
declare -A costs
for r in $(seq 1 "$rounds"); do
  for fault in KILL STOP; do
    dir="$work/$fault$r"
    timeout 600 "$bin" train "${common[@]}" --spheres 0 --run-dir "$dir" --listen 127.0.0.1:0 \
      --min-nodes 2 > "$work/root.out" 2>&1 &
    root=$!; pids+=("$root")
    for _ in $(seq 1 200); do grep -q "listening for nodes" "$work/root.out" && break; sleep 0.05; done
    port=$(grep -o "127.0.0.1:[0-9]*" "$work/root.out" | head -1 | cut -d: -f2)
    timeout 600 "$bin" node --join "127.0.0.1:$port" --spheres 1 --threads 1 --node-id a \
      > /dev/null 2>&1 &
    pids+=("$!")
    timeout 600 "$bin" node --join "127.0.0.1:$port" --spheres 1 --threads 1 --node-id b \
      --reconnect-timeout 1 > /dev/null 2>&1 &
    victim=$!; pids+=("$victim")
    for _ in $(seq 1 1200); do
      [ -s "$dir/metrics.jsonl" ] && [ "$(wc -l < "$dir/metrics.jsonl")" -ge 15 ] && break; sleep 0.05
    done
    node=$(pgrep -P "$victim")  # the node itself, not its `timeout`
    kill -"$fault" "$node" 2>/dev/null || true
    wait "$root" || true
    kill -KILL "$node" "$victim" 2>/dev/null || true
    wait 2>/dev/null || true
    read -r step med c <<< "$(cost "$dir")"
    same=$([ "$(tail -1 "$work/root.out")" = "$ref" ] && echo yes || echo NO)
    printf "%-6s %-5s %6s %10s %12s %s\n" "$r" "$fault" "$step" "$med" "$c" "$same"
    costs[$fault]+="$c "
  done
done
for fault in KILL STOP; do
  python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[2:] if x!='-']; print('median recovery after SIG'+sys.argv[1], f'{statistics.median(v):.0f} ms' if v else '-')" "$fault" ${costs[$fault]}
done
