#!/usr/bin/env bash
# Fault-tolerance figures of `cllm train` (small model, batch 16 x 128, 2 spheres):
#   1. step time with a checkpoint every 10 steps / without (median over steps, R runs each,
#      interleaved so that machine noise hits both alike);
#   2. the cost of an injected crash and of an injected hang: the faulted step's time minus the
#      median step time of the same run (the hang costs about one deadline).
# Usage: bench/bench_faults.sh [BUILD_DIR] [RUNS]   (needs python3 for the JSON)
set -euo pipefail
build="${1:-build}"
runs="${2:-3}"
bin="$build/cllm"
corpus="$(dirname "$0")/../data/kjv.txt"
[ -x "$bin" ] || { echo "bench_faults: $bin not found (build first)" >&2; exit 1; }
[ -s "$corpus" ] || { echo "bench_faults: $corpus missing (tools/get-default-corpus.sh)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
common=(--corpus "$corpus" --model small --steps 60 --eval-every 0 --sample-tokens 0
        --progress plain --spheres 2 --threads 2)

median_step() {  # run dir -> median step_ms over steps > 5
  python3 - "$1" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
print(statistics.median(r["step_ms"] for r in rows if r["step"] > 5))
PY
}
step_ms() {  # run dir, step -> that step's step_ms
  python3 - "$1" "$2" <<'PY'
import json, sys
for l in open(sys.argv[1] + "/metrics.jsonl"):
    r = json.loads(l)
    if r["step"] == int(sys.argv[2]): print(r["step_ms"])
PY
}

echo "== checkpoint every 10 steps vs none ($runs runs each, small, 60 steps, 2 spheres)"
ratios=()
for i in $(seq "$runs"); do
  "$bin" train "${common[@]}" --run-dir "$tmp/plain$i" >/dev/null
  "$bin" train "${common[@]}" --run-dir "$tmp/ckpt$i" --checkpoint-every 10 --keep 3 >/dev/null
  a=$(median_step "$tmp/plain$i"); b=$(median_step "$tmp/ckpt$i")
  r=$(python3 -c "print(f'{$b/$a:.4f}')")
  ratios+=("$r")
  echo "run $i: median step ${a} ms without, ${b} ms with checkpoints: ratio $r"
done
python3 -c "import statistics; print('median ratio', statistics.median([$(IFS=,; echo "${ratios[*]}")]))"

echo "== injected faults (crash of sphere 1 at step 20, hang of sphere 1 at step 40; deadline floor 0.5 s)"
for i in $(seq "$runs"); do
  d="$tmp/fault$i"
  "$bin" train "${common[@]}" --run-dir "$d" --inject crash:sphere=1,step=21 \
    --inject hang:sphere=1,step=41 --deadline-floor 0.5 >/dev/null
  m=$(median_step "$d"); c=$(step_ms "$d" 21); h=$(step_ms "$d" 41)
  python3 -c "print(f'run $i: median step {$m:.1f} ms; crash step {$c:.1f} ms (+{$c-$m:.1f}); hang step {$h:.1f} ms (+{$h-$m:.1f})')"
done
