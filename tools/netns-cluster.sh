#!/usr/bin/env bash
# A cluster on a shaped network on this machine: N network namespaces (host 0 runs the root,
# `cllm train --listen`; hosts 1..N-1 each run a node, `cllm node --join`), each joined by a veth
# pair to a bridge that lives in a namespace of its own, with addresses from one /24 that exists
# only inside those namespaces (no route leads out of them). Both ends of each host's link are
# shaped with `tc ... tbf` (the rate each way). Records the root's step times (metrics.jsonl) and
# the bytes each host's link carried per step (its interface counters inside its namespace).
# Everything (processes, namespaces and so the veths and the bridge) is removed at the end by a
# trap, also after a failure, an interrupt or a timeout. Needs root, `ip` and `tc`.
#
# This kernel has tbf, htb and pfifo but no netem: there is no emulated delay, the link's latency
# goes into the cost model (docs/cluster.md) instead.
#
#   tools/netns-cluster.sh [--bin build/cllm] [--hosts 4] [--rate 100mbit] [--steps 10]
#       [--model tiny] [--node-spheres 1] [--root-spheres 0] [--limit 300] [--out DIR]
#       [--corpus data/kjv.txt] [-- extra cllm train options]
#
# Prints, on its last lines, `key value` pairs (a summary for scripts):
#   hosts, rate, steps, step_ms_median (steps 2.., the first one warms up), compute_ms_median
#   (the step's shard times, compute + fold, summed over every shard: CPU the step needed, as
#   slowed by whatever else runs on the machine), root_tx_per_step,
#   root_rx_per_step, node_tx_per_step, node_rx_per_step (a node's link: the mean over nodes),
#   and as the last line the root's own last line (`weights sha256 ...`).
# Exit status: the root's (0 when the run ended well), 2 for bad arguments, 3 when the namespaces
# could not be made, 124 when a process ran past --limit.
set -euo pipefail

bin=build/cllm
hosts=4
rate=100mbit
steps=10
model=tiny
node_spheres=1
root_spheres=0
limit=300
out=""
corpus="$(dirname "$0")/../data/kjv.txt"
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --node-spheres) node_spheres=$2; shift 2 ;;
    --root-spheres) root_spheres=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --corpus) corpus=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "netns-cluster: unknown option '$1'" >&2; exit 2 ;;
  esac
done
case "$hosts" in '' | *[!0-9]*) echo "netns-cluster: --hosts must be a number" >&2; exit 2 ;; esac
if [ "$hosts" -lt 2 ] || [ "$hosts" -gt 200 ]; then
  echo "netns-cluster: --hosts must be 2..200 (a root and at least one node)" >&2; exit 2
fi
[ -x "$bin" ] || { echo "netns-cluster: $bin is not an executable (build cllm first)" >&2; exit 2; }
[ -s "$corpus" ] || { echo "netns-cluster: corpus $corpus missing" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "netns-cluster: needs root (network namespaces)" >&2; exit 3; }
command -v ip > /dev/null && command -v tc > /dev/null ||
  { echo "netns-cluster: needs ip and tc (iproute2)" >&2; exit 3; }
bin=$(readlink -f "$bin")
corpus=$(readlink -f "$corpus")

# Names unique to this invocation, so that runs side by side never meet. The /24 exists only in
# these namespaces: every run may use the same one.
tag="cn$$"
net=10.213.7
bridge_ns="${tag}br"
host_ns() { echo "${tag}h$1"; }
keep_out=1
if [ -z "$out" ]; then out=$(mktemp -d); keep_out=0; fi
mkdir -p "$out"
made=()   # namespaces made so far
pids=()   # the processes started here (each a `timeout`)

cleanup() {
  local rc=$?
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2> /dev/null; done
  # Whatever still runs inside our namespaces was started by this script.
  for ns in "${made[@]}"; do
    for p in $(ip netns pids "$ns" 2> /dev/null); do kill -KILL "$p" 2> /dev/null; done
  done
  for p in "${pids[@]}"; do wait "$p" 2> /dev/null; done
  for ns in "${made[@]}"; do ip netns del "$ns" 2> /dev/null; done
  [ "$keep_out" = 1 ] || rm -rf "$out"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# tbf's bucket: 32 KiB (a quarter of a millisecond at 1 Gbit/s, 2.6 ms at 100 Mbit/s), or 0.25 ms
# at faster rates. A bucket of several ms let a whole `tiny` weights message (482 KB) through at
# memory speed at 1 Gbit/s, so the link looked faster than its rate; 32 KiB still holds a few
# full-size segments, so the link reaches its rate.
burst=$(python3 - "$rate" 2> /dev/null <<'PY'
import re, sys
m = re.fullmatch(r"([0-9.]+)([kmg]?)bit", sys.argv[1])
if not m or float(m.group(1)) <= 0: sys.exit("bad rate")
bits = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]
print(max(32768, int(bits / 8 * 0.00025)))
PY
) || { echo "netns-cluster: --rate must look like 100mbit or 1gbit" >&2; exit 2; }

ns_exec() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
shape() {  # namespace device
  ns_exec "$1" tc qdisc add dev "$2" root tbf rate "$rate" burst "$burst" latency 500ms
}

must() {  # a step of making the network; a failure ends the run (the trap removes what was made)
  "$@" || { echo "netns-cluster: could not make the namespaces: '$*' failed" >&2; exit 3; }
}
must ip netns add "$bridge_ns"
made+=("$bridge_ns")
must ns_exec "$bridge_ns" ip link add br0 type bridge
must ns_exec "$bridge_ns" ip link set br0 up
for i in $(seq 0 $((hosts - 1))); do
  ns=$(host_ns "$i")
  must ip netns add "$ns"
  made+=("$ns")
  # Both ends are made inside their namespaces: nothing appears in the machine's own.
  must ip link add eth0 netns "$ns" type veth peer name "h$i" netns "$bridge_ns"
  must ns_exec "$bridge_ns" ip link set "h$i" master br0
  must ns_exec "$bridge_ns" ip link set "h$i" up
  must ns_exec "$ns" ip addr add "$net.$((i + 1))/24" dev eth0
  must ns_exec "$ns" ip link set lo up
  must ns_exec "$ns" ip link set eth0 up
  must shape "$ns" eth0         # the host's sending side
  must shape "$bridge_ns" "h$i" # its receiving side
done

# Every host's link at one moment, read in one process from the bridge's ends (h<i> receives
# what host i sends): lines "host rx tx", as the host counts them.
counters() {
  ns_exec "$bridge_ns" sh -c 'for d in /sys/class/net/h*; do
    echo "${d##*/h} $(cat "$d/statistics/tx_bytes") $(cat "$d/statistics/rx_bytes")"; done'
}

head -c 24 /dev/urandom | base64 > "$out/key.txt"
chmod 600 "$out/key.txt"
root_addr="$net.1"
port=7100
common=(--corpus "$corpus" --model "$model" --steps "$steps" --eval-every 0 --sample-tokens 0
        --checkpoint-every 0 --progress plain --log-every 1)
ns_exec "$(host_ns 0)" timeout "$limit" "$bin" train "${common[@]}" --run-dir "$out/run" \
  --spheres "$root_spheres" --threads 1 --listen "$root_addr:$port" \
  --cluster-key "$out/key.txt" --min-nodes $((hosts - 1)) --join-timeout "$limit" "${extra[@]}" \
  > "$out/root.out" 2> "$out/root.err" &
root=$!
pids+=("$root")
for _ in $(seq 1 400); do
  grep -q "listening for nodes" "$out/root.out" "$out/root.err" 2> /dev/null && break
  kill -0 "$root" 2> /dev/null || break
  sleep 0.05
done
start_node() {
  ns_exec "$(host_ns "$1")" timeout "$limit" "$bin" node --join "$root_addr:$port" \
    --cluster-key "$out/key.txt" --spheres "$node_spheres" --threads "$node_spheres" \
    --node-id "n$1" --reconnect-timeout 10 > "$out/node$1.out" 2> "$out/node$1.err" &
  pids+=("$!")
}
# The join traffic (handshake, run settings, tokenizer) is not a step's. The root starts step 1
# when the last node joins: every other node joins first, the counters are read, then the last
# node starts (its join, a few KB, is counted with the steps).
for i in $(seq 1 $((hosts - 2))); do start_node "$i"; done
while kill -0 "$root" 2> /dev/null; do
  joined=$(cat "$out"/node*.err 2> /dev/null | grep -c "cllm node: joined" || true)
  [ "$joined" -ge $((hosts - 2)) ] && break
  sleep 0.02
done
counters > "$out/counters.start"
start_node $((hosts - 1))
rc=0
wait "$root" || rc=$?
counters > "$out/counters.end"
for p in "${pids[@]:1}"; do wait "$p" 2> /dev/null || true; done
if [ "$rc" != 0 ]; then
  echo "netns-cluster: the root ended with status $rc; its last lines:" >&2
  tail -5 "$out/root.err" >&2
  exit "$rc"
fi

python3 - "$out" "$hosts" "$rate" <<'PY'
import json, statistics, sys
out, hosts, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [json.loads(l) for l in open(out + "/run/metrics.jsonl") if l.strip()]
rows = [r for r in rows if "step_ms" in r]
def read(name):
    return {int(a): (int(b), int(c)) for a, b, c in (l.split() for l in open(out + "/" + name))}
s, e = read("counters.start"), read("counters.end")
n = len(rows)
rx = {h: (e[h][0] - s[h][0]) / n for h in e}
tx = {h: (e[h][1] - s[h][1]) / n for h in e}
nodes = [h for h in e if h != 0]
timed = rows[1:] or rows
times = [r["step_ms"] for r in timed]
compute = [r.get("compute_ms", 0) + r.get("fold_ms", 0) for r in timed]
print("hosts", hosts)
print("rate", rate)
print("steps", n)
print("step_ms_median", f"{statistics.median(times):.1f}")
print("compute_ms_median", f"{statistics.median(compute):.1f}")
print("root_tx_per_step", int(tx[0]))
print("root_rx_per_step", int(rx[0]))
print("node_tx_per_step", int(sum(tx[h] for h in nodes) / len(nodes)))
print("node_rx_per_step", int(sum(rx[h] for h in nodes) / len(nodes)))
PY
tail -1 "$out/root.out"
