#!/usr/bin/env bash
# ctest label "net": a root and three nodes in network namespaces joined by shaped links
# (tools/netns-cluster.sh) end with the weights of the same run in one process; and a run that
# fails leaves no namespace behind. Needs root, `ip`, `tc` and network namespaces: without them
# it prints why and exits 77, which ctest reports as skipped (SKIP_RETURN_CODE), never passed.
#   tests/net/test_net_cluster.sh CLLM_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
harness="$src/tools/netns-cluster.sh"
skip() { echo "net test skipped: $1"; exit 77; }
[ "$(id -u)" = 0 ] || skip "not running as root (network namespaces need it)"
command -v ip > /dev/null || skip "no 'ip' command (iproute2)"
command -v tc > /dev/null || skip "no 'tc' command (iproute2)"
probe="cnprobe$$"
ip netns add "$probe" 2> /dev/null || skip "'ip netns add' is not permitted here"
ip netns del "$probe"
ip netns exec "$probe" true 2> /dev/null && { echo "a deleted namespace still runs"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAILED: $1"; exit 1; }
left_behind() { ip netns list | grep -c "^cn$1" || true; }

# A corpus of its own (the default one is not part of the repository): 60 KB of seeded text.
python3 - "$work/corpus.txt" <<'PY'
import random, sys
r = random.Random(17)
words = ("the sphere of spheres turns and every node sums its shards exactly while the root "
         "keeps time over links that carry weights down and sums up").split()
with open(sys.argv[1], "w") as f:
    for _ in range(1200):
        f.write(" ".join(r.choice(words) for _ in range(9)).capitalize() + ".\n")
PY

# The reference: the harness's run (tiny, 4 steps) in one process.
timeout 120 "$bin" train --corpus "$work/corpus.txt" --model tiny --steps 4 --eval-every 0 \
  --sample-tokens 0 --checkpoint-every 0 --progress plain --spheres 2 --run-dir "$work/one" \
  > "$work/one.out"
want=$(tail -1 "$work/one.out")
[[ "$want" == "weights sha256 "* ]] || fail "the one-process run printed no weights hash"

# Both ways the sums can reach the root: the nodes exchange them among themselves (mesh, the
# default), or each sends its whole sum to the root (star).
for mode in mesh star; do
timeout 150 "$harness" --bin "$bin" --corpus "$work/corpus.txt" --hosts 4 --rate 1gbit --steps 4 --limit 100 \
  --out "$work/net-$mode" -- --node-reduce "$mode" > "$work/net.txt" 2> "$work/net.err" &
h=$!
rc=0
wait "$h" || rc=$?
cat "$work/net.txt"
[ "$rc" = 0 ] || { cat "$work/net.err"; fail "the shaped cluster run ($mode) ended with status $rc"; }
got=$(tail -1 "$work/net.txt")
[ "$got" = "$want" ] || fail "shaped cluster ($mode): '$got', one process: '$want'"
[ "$(left_behind "$h")" = 0 ] || fail "namespaces of a finished run were left behind"
[ "$(grep -c "joined" "$work/net-$mode/root.err")" = 3 ] || fail "not every node joined ($mode)"
steps=$(awk '$1 == "steps" {print $2}' "$work/net.txt")
[ "$steps" = 4 ] || fail "the run did $steps steps, not 4"
# What crossed the links: the sums came up packed (raw they are twice the weights that went
# down); with the star the root's link carried the three nodes' traffic, with the mesh one
# packed sum and one copy of the weights per step, less than a node's link; and the counters saw
# at least every byte the root's run counted (a late first reading would miss some).
python3 - "$work/net-$mode/run/summary.json" "$work/net.txt" "$mode" <<'PY' || fail "the bytes on the links ($mode)"
import json, sys
s = json.load(open(sys.argv[1]))
v = dict(l.split()[:2] for l in open(sys.argv[2]) if len(l.split()) == 2)
mode = sys.argv[3]
steps = int(v["steps"])
up, down = s["bytes_received"], s["bytes_sent"]
root = int(v["root_tx_per_step"]) + int(v["root_rx_per_step"])
node = int(v["node_tx_per_step"]) + int(v["node_rx_per_step"])
print(f"{mode}: sums up {up} B, weights and windows down {down} B; root link {root} B/step, "
      f"node link {node} B/step")
ok = True
if not up < 1.6 * down:
    print("the sums were not packed: up / down =", up / down); ok = False
if mode == "star" and not 2.4 * node < root < 3.6 * node:
    print("the root's link did not carry three nodes' traffic"); ok = False
if mode == "mesh" and not root < node:
    print("the root's link carried more than a node's"); ok = False
if mode == "mesh" and not up < 1.5 * 0.6 * 8 * 120576 * steps:  # three would be 3x
    print("the root received more than one packed sum per step"); ok = False
if not int(v["root_rx_per_step"]) * steps >= up or not int(v["root_tx_per_step"]) * steps >= down:
    print("the interface counters saw less than the run sent"); ok = False
sys.exit(0 if ok else 1)
PY
done
# A run whose root refuses its settings: the harness fails, and its namespaces are gone.
rc=0
timeout 60 "$harness" --bin "$bin" --corpus "$work/corpus.txt" --hosts 2 --steps 2 --limit 30 -- --lr -1 \
  > "$work/bad.txt" 2> "$work/bad.err" &
h=$!
wait "$h" || rc=$?
[ "$rc" != 0 ] || fail "a root with bad settings did not fail the harness"
[ "$(left_behind "$h")" = 0 ] || fail "namespaces of a failed run were left behind"
echo "net test passed: $got"
