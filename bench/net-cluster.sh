#!/usr/bin/env bash
# A cluster on a shaped network (tools/netns-cluster.sh): a root (a pure coordinator) and 1, 3 and
# 7 one-sphere nodes, each host's link shaped to 100 Mbit/s and 1 Gbit/s, interleaved rounds.
# Prints per point the median step time over the rounds, the shard times of a step (compute + fold
# summed over its shards: the CPU it needed, slowed by whatever else runs on the machine), the
# bytes per step on the root's link and on a node's link (sent + received, from the interfaces'
# counters), their ratio, and whether
# every run ended with the weights of the same run in one process (of the first build). BUILDS is
# one build folder, or several as LABEL=DIR,LABEL=DIR (e.g. before=/tmp/old,after=build): their
# rounds interleave. MODES: how the nodes' sums reach the root (cllm train --node-reduce): mesh,
# star or both (each build runs each mode; a row is labelled BUILD/MODE when there are several).
# Needs root, `ip` and `tc`.
#   bench/net-cluster.sh [BUILDS] [ROUNDS] [STEPS] [MODELS (tiny,small)] [HOSTS (2,4,8)]
#                        [RATES (100mbit,1gbit)] [MODES (mesh,star)]
set -euo pipefail
builds=${1:-build}; rounds=${2:-3}; steps=${3:-10}; models=${4:-tiny}; hostlist=${5:-2,4,8}
rates=${6:-100mbit,1gbit}
modes=${7:-mesh}
here=$(dirname "$0")
harness="$here/../tools/netns-cluster.sh"
corpus="$here/../data/kjv.txt"
declare -A bins modeof
labels=()
IFS=, read -r -a mode_list <<< "$modes"
IFS=, read -r -a build_list <<< "$builds"
for b in "${build_list[@]}"; do
  if [[ "$b" == *=* ]]; then label=${b%%=*}; dir=${b#*=}; else label=$b; dir=$b; fi
  [ -x "$dir/cllm" ] || { echo "net-cluster: $dir/cllm not found (build first)" >&2; exit 1; }
  for mode in "${mode_list[@]}"; do
    name=$label
    [ "${#mode_list[@]}" -gt 1 ] && name="$label/$mode"
    bins[$name]="$dir/cllm"
    modeof[$name]=$mode
    labels+=("$name")
  done
done
bin=${bins[${labels[0]}]}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
raw="$work/raw.tsv"
: > "$raw"
IFS=, read -r -a model_list <<< "$models"
IFS=, read -r -a host_list <<< "$hostlist"
IFS=, read -r -a rate_list <<< "$rates"
common=(--corpus "$corpus" --steps "$steps" --eval-every 0 --sample-tokens 0 --checkpoint-every 0
        --progress plain)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A ref
for m in "${model_list[@]}"; do
  timeout 900 "$bin" train "${common[@]}" --model "$m" --spheres 2 --run-dir "$work/one-$m" \
    > "$work/one-$m.out"
  ref[$m]=$(tail -1 "$work/one-$m.out")
done
for r in $(seq 1 "$rounds"); do
 for b in "${labels[@]}"; do
  for m in "${model_list[@]}"; do
    for h in "${host_list[@]}"; do
      for rate in "${rate_list[@]}"; do
        o="$work/${b//\//-}-$m-$h-$rate-$r"
        if ! timeout 900 "$harness" --bin "${bins[$b]}" --hosts "$h" --rate "$rate" --steps "$steps" \
          --model "$m" --limit 800 -- --node-reduce "${modeof[$b]}" > "$o.txt" 2> "$o.err"; then
          echo "net-cluster: $b $m $h hosts $rate round $r failed:" >&2; tail -3 "$o.err" >&2
          exit 1
        fi
        v() { awk -v k="$1" '$1 == k {print $2}' "$o.txt"; }
        same=$([ "$(tail -1 "$o.txt")" = "${ref[$m]}" ] && echo yes || echo NO)
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$b" "$m" "$h" "$rate" "$r" \
          "$(v step_ms_median)" "$(v compute_ms_median)" "$(v root_tx_per_step)" "$(v root_rx_per_step)" \
          "$(v node_tx_per_step)" "$(v node_rx_per_step)" "$same" | tee -a "$raw" >&2
      done
    done
  done
 done
done
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs;" \
  "load average at the start $load_start, at the end $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$raw" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
points = {}
for b, m, h, rate, r, ms, cms, rtx, rrx, ntx, nrx, same in rows:
    points.setdefault((b, m, int(h), rate), []).append(
        (float(ms), int(rtx) + int(rrx), int(ntx) + int(nrx), int(rtx), int(rrx), same, float(cms)))
print(f"{'build':8} {'model':6} {'hosts':>5} {'link':>8} {'step ms':>8} {'(rounds)':>22} "
      f"{'shards ms':>9} {'root B/step':>12} "
      f"{'node B/step':>12} {'root/node':>9} {'root tx':>10} {'root rx':>10}  one-process weights")
order = {b: i for i, b in enumerate(dict.fromkeys(r[0] for r in rows))}
for (b, m, h, rate), v in sorted(points.items(),
                                 key=lambda kv: (kv[0][1], kv[0][3], kv[0][2], order[kv[0][0]])):
    ms = statistics.median(x[0] for x in v)
    root = statistics.median(x[1] for x in v)
    node = statistics.median(x[2] for x in v)
    print(f"{b:8} {m:6} {h:5} {rate:>8} {ms:8.1f} {'/'.join(f'{x[0]:.0f}' for x in v):>22} "
          f"{statistics.median(x[6] for x in v):9.1f} "
          f"{root:12.0f} {node:12.0f} {root / node:9.2f} {statistics.median(x[3] for x in v):10.0f} "
          f"{statistics.median(x[4] for x in v):10.0f}  "
          f"{'yes' if all(x[5] == 'yes' for x in v) else 'NO'}")
PY
