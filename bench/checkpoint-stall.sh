#!/usr/bin/env bash
# Does writing a checkpoint stall training? `cllm train` with a checkpoint every N steps against
# the same run with the final checkpoint only, in interleaved rounds, pinned to the same CPUs:
# the wall time per step between the metrics rows of steps 2 and steps-1 (so the start, the
# final evaluation and the final checkpoint are outside it, and everything a checkpoint costs the
# training thread - the snapshot, and the background writer's share of the CPUs - is inside),
# its ratio per round and the median.
#
#   bash bench/checkpoint-stall.sh [--build DIR] [--rounds 2] [--steps 12] [--every 5]
#                                  [--cpus 0] [--corpus data/kjv.txt] [--dir /tmp/cllm-ckpt]
#                                  [--] [cllm train options: the model and batch]
#
# Default model: the GPT-2 body at batch 1 x 1024 (`--d-model 768 --layers 12 --heads 12
# --context 1024 --batch 1 --micro-batch 1`); for `gpt2` pass `-- --model gpt2 --tokenizer
# gpt2.json --context 1024 --batch 1 --micro-batch 1` (cllm tokenizer import writes gpt2.json).
# One computing sphere. The rows' arrival times are read by polling metrics.jsonl (every 2 ms).
# Not part of CI; it writes two run folders of checkpoints under --dir (GBs at GPT-2 sizes).
set -euo pipefail

build=build rounds=2 steps=12 every=5 cpus=0 corpus=data/kjv.txt dir=/tmp/cllm-ckpt
model=(--d-model 768 --layers 12 --heads 12 --context 1024 --batch 1 --micro-batch 1)
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --every) every=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --corpus) corpus=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --) shift; model=("$@"); break ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "checkpoint-stall.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
cllm="$build/cllm"
[ -x "$cllm" ] || { echo "checkpoint-stall.sh: $cllm not found (build first, or --build DIR)" >&2; exit 2; }
[ -f "$corpus" ] || { echo "checkpoint-stall.sh: corpus $corpus not found" >&2; exit 2; }
[ "$steps" -ge $((every + 3)) ] || { echo "checkpoint-stall.sh: --steps must be >= --every + 3" >&2; exit 2; }
mkdir -p "$dir"

# Runs cllm train with --checkpoint-every $1 in run folder $2; prints "wall_ms_per_step
# median_step_ms cpu_ms_per_step" over the rows of steps 2 .. steps-1 (cpu: the process's CPU
# time, the rows' cpu_s, so the writer's work shows even where it did not stall the step).
timed_run() {
  /usr/bin/python3 - "$steps" "$2" taskset -c "$cpus" "$cllm" train --corpus "$corpus" \
    "${model[@]}" --spheres 1 --threads 1 --steps "$steps" --checkpoint-every "$1" --keep 1 \
    --eval-every 0 --eval-windows 1 --sample-tokens 0 --run-dir "$2" --overwrite <<'PY'
import json, os, statistics, subprocess, sys, time
steps, run_dir, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
metrics = os.path.join(run_dir, "metrics.jsonl")
if os.path.exists(metrics):
    os.remove(metrics)
proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
seen, buf, arrival, rows = 0, b"", {}, {}
while True:
    done = proc.poll() is not None
    try:
        with open(metrics, "rb") as f:
            f.seek(seen)
            chunk = f.read()
    except FileNotFoundError:
        chunk = b""
    now = time.perf_counter()
    seen += len(chunk)
    buf += chunk
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if "step" in row and "step_ms" in row:
            arrival[row["step"]], rows[row["step"]] = now, row
    if done:
        break
    time.sleep(0.002)
if proc.returncode != 0:
    sys.exit("cllm train failed (%d): %s" % (proc.returncode, proc.stderr.read().decode()[-500:]))
first, last = 2, steps - 1
if first not in arrival or last not in arrival:
    sys.exit("metrics.jsonl lacks the rows of steps %d and %d" % (first, last))
wall = (arrival[last] - arrival[first]) / (last - first) * 1e3
med = statistics.median(rows[s]["step_ms"] for s in range(first + 1, last + 1))
cpu = (rows[last]["cpu_s"] - rows[first]["cpu_s"]) / (last - first) * 1e3
print("%.1f %.1f %.1f" % (wall, med, cpu))
PY
}

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), pinned to CPUs $cpus"
echo "cllm train ${model[*]} --spheres 1 --threads 1 --steps $steps; checkpoint every $every" \
  "steps against the final one only; wall time per step over steps 3..$((steps - 1))"
echo
printf "%-6s %16s %16s %8s %18s %18s %14s %14s\n" round "every $every ms" "final only ms" ratio \
  "step_ms med (ckpt)" "step_ms med (none)" "cpu ms (ckpt)" "cpu ms (none)"
ratios=() withs=() withouts=()
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then
    read -r w wm wc < <(timed_run "$every" "$dir/every")
    read -r n nm nc < <(timed_run 0 "$dir/final")
  else
    read -r n nm nc < <(timed_run 0 "$dir/final")
    read -r w wm wc < <(timed_run "$every" "$dir/every")
  fi
  ratio=$(awk -v a="$w" -v b="$n" 'BEGIN{printf "%.3f", a/b}')
  ratios+=("$ratio") withs+=("$w") withouts+=("$n")
  printf "%-6s %16.1f %16.1f %8s %18.1f %18.1f %14.1f %14.1f\n" "$r" "$w" "$n" "$ratio" "$wm" \
    "$nm" "$wc" "$nc"
done
med() { printf "%s\n" "$@" | sort -g | awk '{v[NR]=$1} END{print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
printf "%-6s %16.1f %16.1f %8.3f\n" median "$(med "${withs[@]}")" "$(med "${withouts[@]}")" \
  "$(med "${ratios[@]}")"
du -sh "$dir/every" | sed 's/^/run folder with checkpoints: /'
