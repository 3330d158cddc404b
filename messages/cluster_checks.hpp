#pragma once
// What a root and a node check in each other's messages before anything of them is used: one
// function per message, called by the receiving actor (actors/cluster_root.cpp,
// actors/node_agent.cpp) and by the fuzz target that decodes arbitrary bytes into these messages
// (fuzz/fuzz_cluster.cpp). Each returns "" when the message is fine, else why it is not, as a
// short phrase of plain ASCII (for one log line); none of them throws.
#include <cstdint>
#include <string>
#include <vector>

#include "messages/cluster.hpp"
#include "src/fingerprint.hpp"
#include "src/payload_assembly.hpp"

namespace cllm {

// Root, from a peer: a hello from a node of this protocol with sane ids and sizes.
std::string hello_problem(const JoinHello& h);
// Root: how a peer is named in a log line ("a node on HOST" or "a node").
std::string hello_who(const JoinHello& h);
// Root, from a proven peer: its fingerprint in visible ASCII, any other byte escaped (the fields'
// first bytes end up in the refusal's line).
NumericsFingerprint fingerprint_from_wire(const Fingerprint& fp);

// Node, from the proven root: the run it describes (parsed and validated into `run`).
std::string welcome_problem(const JoinWelcome& w, RunConfig& run);
// Node: a request for `run`'s shards, the node holding weights version `held_version` and
// receiving version `spreading` from its peers (-1: none).
std::string work_problem(const RunConfig& run, int64_t held_version, int64_t spreading,
                         const NodeWork& w);
// Node: where the weights of an accepted request arrive.
PayloadAssembly weights_assembly(const NodeWork& w);

// Node: a spread of `run`'s weights to this node (index `me`); where its pieces arrive.
std::string spread_problem(const RunConfig& run, int32_t me, const NodeSpread& s);
PayloadAssembly spread_assembly(const NodeSpread& s);
// Node: a request to hand over its held sum, this node being index `me`.
std::string reduce_problem(int32_t me, const NodeReduce& r);
// The elements [begin, end) of the exchanged sum that slot `me` of a reduce over `peers` nodes
// answers with (the whole sum for one).
struct SliceRange {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
};
SliceRange reduce_slice(const RunConfig& run, int peers, int me);

// Where a packed sum of `values` values arrives, sized by its first chunk's `packed_bytes` when
// that is a size a packing of that many values can have (else an assembly that takes no piece).
// The root uses it for a node's sum or slice; a node for a peer's piece of its slice.
PayloadAssembly sum_assembly(size_t values, uint64_t packed_bytes);
// Root: a node's answer to a request for `shards` shards of `run`, its sum's chunks as they
// arrived in `sum` (none when the node was to keep it: `held`). Texts that travel on (the error,
// the fault events' reasons) are made printable in place.
std::string result_problem(const RunConfig& run, int32_t shards, bool held,
                           const PayloadAssembly& sum, NodeResult& r);
// The packed sum of an answer that passed result_problem (or a peer's piece), unpacked into `sum`
// (`values` values); "" or why the bytes are not a packing of them.
std::string unpack_partial_sum(size_t values, const std::vector<char>& packed,
                               std::vector<int64_t>& sum);

}  // namespace cllm
