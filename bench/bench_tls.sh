#!/usr/bin/env bash
# The cost of TLS on the cluster's links, on this machine over loopback: a root with 1 sphere
# (1 thread) plus one node with 1 sphere (1 thread), in clear and with --tls-* (a throw-away CA
# made here), interleaved rounds. Prints tokens/s, the ratio TLS / plain and the network ms per
# step (from summary.json).
#   bench/bench_tls.sh [BUILD_DIR] [ROUNDS] [STEPS] [extra cllm train options...]
set -euo pipefail
build=${1:-build}; rounds=${2:-3}; steps=${3:-40}; shift $(( $# < 3 ? $# : 3 ))
bin="$build/cllm"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2)
openssl req -x509 "${ec[@]}" -subj /CN=bench-ca -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
for n in root node; do
  openssl req "${ec[@]}" -subj "/CN=$n" -keyout "$work/$n.key" -out "$work/$n.csr" 2>/dev/null
  openssl x509 -req -days 2 -in "$work/$n.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -out "$work/$n.pem" 2>/dev/null
done
tls() { echo --tls-cert "$work/$1.pem" --tls-key "$work/$1.key" --tls-ca "$work/ca.pem"; }
common=(--steps "$steps" --eval-every 0 --sample-tokens 0 --checkpoint-every 0 --progress plain "$@")
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
# One cluster run (mode plain or tls, round r): prints its tokens/s and network ms per step.
cluster() {
  local mode=$1 r=$2 root_tls=() node_tls=()
  [ "$mode" = tls ] && read -ra root_tls <<< "$(tls root)" && read -ra node_tls <<< "$(tls node)"
  timeout 600 "$bin" train "${common[@]}" --spheres 1 --threads 1 --run-dir "$work/$mode$r" \
    --listen 127.0.0.1:0 --min-nodes 1 "${root_tls[@]}" > "$work/root$mode$r.out" &
  local root=$!
  for _ in $(seq 1 400); do grep -q "listening for nodes" "$work/root$mode$r.out" 2>/dev/null && break; sleep 0.05; done
  local port
  port=$(grep -o "127.0.0.1:[0-9]*" "$work/root$mode$r.out" | head -1 | cut -d: -f2)
  timeout 600 "$bin" node --join "127.0.0.1:$port" --spheres 1 --threads 1 "${node_tls[@]}" \
    > /dev/null 2>&1 &
  local node=$!
  wait $root; wait $node
  echo "$(field "$work/$mode$r/summary.json" tokens_per_s) $(field "$work/$mode$r/summary.json" network_ms_median)"
}
printf "%-6s %12s %12s %7s %12s %12s\n" round "plain tok/s" "TLS tok/s" ratio "plain net ms" "TLS net ms"
ratios=()
for r in $(seq 1 "$rounds"); do
  read -r plain plain_net <<< "$(cluster plain "$r")"
  read -r secure secure_net <<< "$(cluster tls "$r")"
  ratio=$(python3 -c "print(f'{$secure/$plain:.3f}')")
  ratios+=("$ratio")
  printf "%-6s %12.0f %12.0f %7s %12.2f %12.2f\n" "$r" "$plain" "$secure" "$ratio" "$plain_net" "$secure_net"
done
python3 -c "import statistics,sys; print('median ratio', statistics.median(map(float, sys.argv[1:])))" "${ratios[@]}"
