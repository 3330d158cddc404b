#!/usr/bin/env python3
"""The cluster's cost model (docs/cluster.md, "Cost model"): a step's time from the model's size,
the link rate and a few measured constants, for the star (`--node-reduce star`: the root sends
the weights to every node and receives every node's exact sum), the mesh that is built
(`--node-reduce mesh`, the default: the root sends each node a share of the weights, which it
forwards to the others; the nodes exchange slices of their packed sums, and each sends the total
of its slice to the root, which applies AdamW), and the owner scheme (a ring reduce-scatter with
each node updating its slice and an all-gather: NOT BUILT; the root still applies the optimizer).

    bench/net-cluster.sh ... | bench/cluster_cost_model.py     # prediction against measurement
    bench/cluster_cost_model.py --gpt2                          # GPT-2 size, 1 and 10 Gbit/s

Rows of builds labelled "before" are the star with raw int64 sums (protocol 1), labels ending in
"/mesh" the mesh (with fewer than two nodes it is the star), any other label the star with packed
sums.
"""
import math
import sys

# Measured on this machine (docs/cluster.md says how):
RHO = 0.575  # packed / raw bytes of a node's exact sum: tiny 0.571, small 0.581 (summary.json)
OVERHEAD = 1.05  # interface bytes per payload byte (TCP/IP, BASP): 1,013,762 / 964,608 for tiny
CPU_NS_PER_BYTE = 1.1  # the root's CPU per byte of its link (serialising, copies, TCP): from the
# loopback figure below in docs/cluster.md (10.1 MB per step in 11-12 ms of network time)
# Two constants of the mesh's model are FITTED, not measured directly (to the 1 Gbit/s mesh points
# of tiny and small at 4 and 8 hosts, where the mesh is bound by the 2 cores every process of the
# shaped cluster shares, not by the links): the CPU per byte at each end of a transfer between
# those processes (BASP, the kernel's TCP over the veths, the cluster key's two relays per
# connection), and the cost of each of the mesh's 4 message hops beyond the star's (a process to
# wake on a busy core).
KAPPA_ALL_NS = 5.0
MESH_HOP_MS = 2.0
CODEC_NS = 1.6  # packing or unpacking, per value: small's 842,496 values pack in 1.3-1.4 ms and
# unpack in 1.3 ms (/tmp timing loop over real sums, best of 20)
SHARDS = 8  # shards per step: --batch 16 / --micro-batch 2, the defaults
CORES = 2  # the namespaces share one 2-core machine: at most 2 shards compute at once
MODELS = {  # parameters, ms per shard on one thread (compute + fold), ms of the root's apply
    "tiny": (120_576, 0.84, 0.1),
    "small": (842_496, 10.1, 1.7),
}
RATES = {"100mbit": 12.5e6, "1gbit": 125e6, "10gbit": 1250e6}  # bytes/s


def compute_ms(shard_ms, nodes, cores, shards_sum_ms=None):
    """The shards' time: dealt evenly over the nodes, at most `cores` at once. `shards_sum_ms`:
    the step's shard times summed as the run measured them (else SHARDS x shard_ms)."""
    if shards_sum_ms is not None:
        return shards_sum_ms / min(nodes, cores)
    return shard_ms * max(math.ceil(SHARDS / nodes), math.ceil(SHARDS / cores))


def star_bounds_ms(p, hosts, rate, packed, shard_ms, apply_ms, cores=CORES, alpha_ms=0.0,
                   shards_sum_ms=None):
    """Root + M = hosts-1 nodes; every byte crosses the root's link: weights down (d per node),
    sums up (u per node). A node computes once its weights are whole; the root applies once
    every sum is in. Two bounds, by how the root's sending side is shared among the M weight
    transfers:
      fair:       TCP shares it evenly, every node has its weights at M d, then all compute, then
                  all sums come up: M d + c + M u (the full-duplex link is half idle);
      one by one: node i has its weights at i d, computes, and its sum queues for the root's
                  receiving side behind the earlier ones (downloads and uploads overlap).
    Returns (fair, one by one) in ms."""
    m = hosts - 1
    d = 4 * p * OVERHEAD / rate * 1e3
    u = (RHO if packed else 1.0) * 8 * p * OVERHEAD / rate * 1e3
    fair = m * d + compute_ms(shard_ms, m, cores, shards_sum_ms) + m * u
    # Staggered: no two nodes compute at once.
    c_node = (shards_sum_ms / m if shards_sum_ms is not None else
              shard_ms * math.ceil(SHARDS / m))
    done = 0.0
    for i in range(1, m + 1):
        done = max(done, i * d + c_node) + u
    # The root is one thread: the CPU for every byte of its link adds to both, and so does
    # unpacking every node's sum (a node's packing: once, in parallel with the others').
    cpu = m * (d + u) * rate / 1e3 * CPU_NS_PER_BYTE * 1e-6
    codec = (m + 1) * p * CODEC_NS * 1e-6 if packed else 0.0
    fixed = apply_ms + cpu + codec + 2 * alpha_ms
    return fair + fixed, done + fixed


def star_ms(*args, **kwargs):
    """The prediction: the middle of the two bounds (TCP's sharing is neither fair nor one by
    one; the middle is the one constant of the model not measured directly, chosen once)."""
    fair, one_by_one = star_bounds_ms(*args, **kwargs)
    return (fair + one_by_one) / 2


def owner_ms(p, hosts, rate, shard_ms, apply_ms, cores=CORES, alpha_ms=0.0):
    """(hosts-1) computing nodes in a ring (the root is the control plane: a few KB per step).
    Reduce-scatter of the packed sums, then all-gather of the fp32 weights: each node's link
    carries (K-1)/K of both, in both directions at once; 2(K-1) sequential hops of latency;
    each node applies AdamW to 1/K of the parameters."""
    k = hosts - 1
    per_link = (k - 1) / k * (RHO * 8 * p + 4 * p) * OVERHEAD
    cpu = 2 * per_link * CPU_NS_PER_BYTE * 1e-6  # each node sends and receives per_link
    # Every hop of the reduce-scatter unpacks, adds and packs again its slice.
    codec = (k - 1) / k * p * 2 * CODEC_NS * 1e-6
    return (compute_ms(shard_ms, k, cores) + per_link / rate * 1e3 + cpu + codec + apply_ms / k +
            2 * (k - 1) * alpha_ms)


def mesh_ms(p, hosts, rate, shard_ms, apply_ms, cores=CORES, alpha_ms=0.0, shards_sum_ms=None,
            kappa_ns=KAPPA_ALL_NS, hop_ms=MESH_HOP_MS):
    """Root + K = hosts-1 nodes, the mesh that is built. Two exchanges, each bound by the links
    or by the cores that move the bytes, whichever is slower:
      spread:   the root sends share j of the weights (W/K) to node j, all at once; then each
                node forwards its share to the K-1 others (one piece per share at these sizes, so
                the two do not overlap): W/R + (K-1)/K W/R on the wire; every byte is handled at
                both ends: 2 K W bytes of CPU over the cores.
      exchange: each node sends slice j of its packed sum S to node j, (K-1)/K S each way at
                once, then the K slice totals (S in all) come into the root's link:
                (K-1)/K S/R + S/R; 2 K S bytes of CPU.
    Between them the compute; after them packing (each node packs its slices and its total and
    unpacks K-1 pieces: about 2 P values), the root's unpacking and apply, and its 4 message
    hops beyond the star's (each the larger of the link's latency and `hop_ms`). With one node
    the mesh is not used: the star."""
    k = hosts - 1
    if k < 2:
        return star_ms(p, hosts, rate, True, shard_ms, apply_ms, cores=cores, alpha_ms=alpha_ms,
                       shards_sum_ms=shards_sum_ms)
    w = 4 * p * OVERHEAD
    s = RHO * 8 * p * OVERHEAD
    par = min(k + 1, cores)
    spread = max((w + (k - 1) / k * w) / rate * 1e3, 2 * k * w * kappa_ns * 1e-6 / par)
    exchange = max(((k - 1) / k * s + s) / rate * 1e3, 2 * k * s * kappa_ns * 1e-6 / par)
    codec = k * 2 * p * CODEC_NS * 1e-6 / min(k, cores) + p * CODEC_NS * 1e-6
    return (spread + compute_ms(shard_ms, k, cores, shards_sum_ms) + exchange + codec + apply_ms +
            4 * max(alpha_ms, hop_ms))


def mesh_link_bytes(p, k, rho=RHO):
    """A node's link per step in the mesh (sent + received, payload): the weights it lacks (W)
    and its share forwarded to K-1 others, its sum's K-1 foreign slices out and its peers' pieces
    of its own slice in, its slice's total to the root: (2K-1)/K (W + S). The root's: W + S."""
    w, s = 4 * p, rho * 8 * p
    return (2 * k - 1) / k * (w + s), w + s


def float_ring_bytes(p, k):
    """What a float ring all-reduce sends per member per step (and receives): 2(K-1)/K x 4P."""
    return 2 * (k - 1) / k * 4 * p


def against_measurement(lines):
    print(f"{'build':14} {'model':6} {'hosts':>5} {'link':>8} {'measured':>9} {'predicted':>9} "
          f"{'error':>7} {'bounds (fair / one by one)':>27}")
    worst = 0.0
    for line in lines:
        f = line.split()
        if len(f) < 5 or f[1] not in MODELS or f[3] not in RATES:
            continue
        build, model, hosts, link, measured = f[0], f[1], int(f[2]), f[3], float(f[4])
        # Tables with the runs' own shard times (bench/net-cluster.sh prints them after the
        # rounds) use them: the machine is shared, and its load slows the compute.
        try:  # (older tables have no such column)
            shards_sum = float(f[6]) if "/" in f[5] or f[5].replace(".", "").isdigit() else None
        except ValueError:
            shards_sum = None
        p, shard_ms, apply_ms = MODELS[model]
        args = (p, hosts, RATES[link], build != "before", shard_ms, apply_ms)
        fair, one = star_bounds_ms(*args, shards_sum_ms=shards_sum)
        if build.endswith("/mesh"):
            pred = mesh_ms(p, hosts, RATES[link], shard_ms, apply_ms, shards_sum_ms=shards_sum)
        else:
            pred = star_ms(*args, shards_sum_ms=shards_sum)
        err = (pred - measured) / measured
        worst = max(worst, abs(err))
        print(f"{build:14} {model:6} {hosts:5} {link:>8} {measured:9.1f} {pred:9.1f} "
              f"{err * 100:+6.1f}% {fair:13.1f} / {one:11.1f}")
    print(f"largest error {worst * 100:.1f} %")


def gpt2():
    # GPT-2 small: 124,439,808 parameters (tied embedding). A shard is one sequence of 1024
    # tokens, ~6 P T + 12 L T^2 d = 8.8e11 FLOP; at the 70 GFLOP/s a core of this machine
    # reaches in the step (docs/performance.md) that is 12.6 s. Each node is assumed to have as
    # many cores as it gets shards (compute 12.6 s whatever the node count). The times below
    # are the communication on top of it, by the same functions as the measured points.
    p = 124_439_808
    shard_s = (6 * p * 1024 + 12 * 12 * 1024**2 * 768) / 70e9
    print(f"GPT-2 124M: P = {p:,}; compute per step {shard_s:.1f} s (one sequence per core)")
    print(f"{'link':>7} {'nodes':>5} {'star raw':>9} {'star packed':>11} {'mesh':>7} {'owners':>7} "
          f"{'float ring':>10} {'star root GB':>12} {'star node GB':>12} {'mesh root GB':>12} "
          f"{'mesh node GB':>12}")
    big = 10**9  # cores: compute is left out (shard_ms 0)
    for link, alpha in (("1gbit", 0.2), ("10gbit", 0.05)):
        r = RATES[link]
        for k in (1, 3, 7, 15):
            hosts = k + 1
            star_raw = star_ms(p, hosts, r, False, 0, 0, cores=big, alpha_ms=alpha) / 1e3
            star_packed = star_ms(p, hosts, r, True, 0, 0, cores=big, alpha_ms=alpha) / 1e3
            owners = owner_ms(p, hosts, r, 0, 0, cores=big, alpha_ms=alpha) / 1e3
            # Each machine moves its own bytes on its own cores: the root's measured CPU per byte.
            mesh = mesh_ms(p, hosts, r, 0, 0, cores=big, alpha_ms=alpha,
                           kappa_ns=CPU_NS_PER_BYTE, hop_ms=0) / 1e3
            mesh_node, mesh_root = (x * OVERHEAD / 1e9 for x in mesh_link_bytes(p, k))
            ring_bytes = float_ring_bytes(p, k) * OVERHEAD
            ring = (ring_bytes / r + 2 * ring_bytes * CPU_NS_PER_BYTE * 1e-9 +
                    2 * (k - 1) * alpha / 1e3)
            node_gb = (4 + RHO * 8) * p * OVERHEAD / 1e9
            print(f"{link:>7} {k:5} {star_raw:8.1f}s {star_packed:10.1f}s {mesh:6.2f}s {owners:6.2f}s "
                  f"{ring:9.2f}s {k * node_gb:12.2f} {node_gb:12.2f} {mesh_root:12.2f} "
                  f"{mesh_node:12.2f}")
    print("(communication per step on top of the compute; alpha = 0.2 ms per message at 1 Gbit/s,"
          " 0.05 ms at 10 Gbit/s; link GB: sent + received per step, packed sums; mesh: built, "
          "owners: not built)")


if __name__ == "__main__":
    if "--gpt2" in sys.argv[1:]:
        gpt2()
    else:
        against_measurement(sys.stdin)
