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
// Node: a request for `run`'s shards, the node holding weights version `held_version`.
std::string work_problem(const RunConfig& run, int64_t held_version, const NodeWork& w);
// Node: where the weights of an accepted request arrive.
PayloadAssembly weights_assembly(const NodeWork& w);

// Root: where the packed partial sum of a request for `run`'s shards arrives, sized by its first
// chunk's `packed_bytes` when that is a size a packing of the model's sum can have (else an
// assembly that takes no piece).
PayloadAssembly sum_assembly(const RunConfig& run, uint64_t packed_bytes);
// Root: a node's answer to a request for `shards` shards of `run`, its sum's chunks as they
// arrived in `sum`. Texts that travel on (the error, the fault events' reasons) are made
// printable in place.
std::string result_problem(const RunConfig& run, int32_t shards, const PayloadAssembly& sum,
                           NodeResult& r);
// Root: the packed sum of an answer that passed result_problem, unpacked into `sum` (the model's
// size); "" or why the bytes are not a packing of it.
std::string unpack_partial_sum(const RunConfig& run, const std::vector<char>& packed,
                               std::vector<int64_t>& sum);

}  // namespace cllm
