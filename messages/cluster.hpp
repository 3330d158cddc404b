#pragma once
// The messages between the root and its remote nodes, over CAF's network layer. Everything here
// is registered on both sides under the same names (register_messages). Large payloads (weights
// down, partial sums up) travel as raw byte chunks of at most kChunkBytes: CAF 0.17 serialises a
// vector<float> element by element (~15x slower than bytes) and its 32-bit frame length breaks
// silently at 4 GiB.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "messages/messages.hpp"
#include "src/backend.hpp"
#include "src/training.hpp"

namespace cllm {

constexpr int32_t kClusterProtocol = 4;
// Protocol 2: partial sums travel packed (src/sum_pack.hpp). Every payload's size is known to its
// receiver or bounded by it (the run's model): a piece of anything else is dropped
// (messages/cluster_checks.hpp). Protocol 3: a node's answer carries its process's CPU time and
// resident memory; a request carries its StepCtl. Protocol 4: nodes reach each other (each
// publishes its agent for its peers, PeerEndpoint) and exchange the step's sums and weights among
// themselves (NodeSpread, NodeReduce): the root's link carries one packed sum and one copy of the
// weights per step, whatever the number of nodes.
constexpr size_t kChunkBytes = size_t(4) << 20;

using hello_atom = caf::atom_constant<caf::atom("hello")>;
using proof_atom = caf::atom_constant<caf::atom("proof")>;
using ready_atom = caf::atom_constant<caf::atom("ready")>;
using join_atom = caf::atom_constant<caf::atom("join")>;
using leave_atom = caf::atom_constant<caf::atom("leave")>;
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;
using work_atom = caf::atom_constant<caf::atom("work")>;
using chunk_atom = caf::atom_constant<caf::atom("chunk")>;
using result_atom = caf::atom_constant<caf::atom("result")>;
using members_atom = caf::atom_constant<caf::atom("members")>;
using spread_atom = caf::atom_constant<caf::atom("spread")>;
using reduce_atom = caf::atom_constant<caf::atom("reduce")>;
using wpiece_atom = caf::atom_constant<caf::atom("wpiece")>;
using spiece_atom = caf::atom_constant<caf::atom("spiece")>;
using peer_atom = caf::atom_constant<caf::atom("peer")>;
using need_atom = caf::atom_constant<caf::atom("need")>;
using have_atom = caf::atom_constant<caf::atom("have")>;

// How a node's agent ended, or why the gateway refused it: the code of an error of category
// "node", whose context is the line to print (std::string).
enum class node_exit : uint8_t {
  done = 1,     // the root ended the run
  left = 2,     // asked to leave (SIGTERM): finished its step and said goodbye
  refused = 3,  // the root refused it (wrong key, other numerics, duplicate id)
  no_root = 4,  // no root to be found within the reconnect timeout
};
caf::error make_node_error(node_exit code, std::string line);
// The code of a "node" error, or nothing for any other error.
std::optional<node_exit> as_node_exit(const caf::error& e);

// Where a node's peers reach it (its agent, published for them; port 0: nowhere, so the node
// takes no part in exchanges), with the index the root gave it.
struct PeerEndpoint {
  int32_t node = 0;
  std::string host;
  uint16_t port = 0;
};

// A node that passed the gateway, as the coordinator sees it (in-process).
struct JoinedNode {
  int32_t index = 0;
  std::string id, host;
  int32_t spheres = 0, threads = 0, height = 0;
  PeerEndpoint peer;
};

// Node -> gateway, first: who it is and its half of the nonces. Answered with the root's nonce.
struct JoinHello {
  int32_t protocol = kClusterProtocol;
  std::string node_id, host, nonce;
  int32_t spheres = 0, fanout = 0, threads = 0, height = 0;
  std::string peer_host;  // where its peers reach it (port 0: they do not)
  uint16_t peer_port = 0;
};

// What decides the last bits of a gradient on a machine: a fixed probe shard's gradient, the
// build, the model and the tokenizer. Nodes whose fingerprint differs from the root's are refused.
// It mirrors src/fingerprint.hpp's NumericsFingerprint field for field because src/ knows no CAF
// (no inspect, no registered name there) and because what arrives here is a peer's bytes: the
// root turns it into a NumericsFingerprint only through fingerprint_from_wire, which escapes what
// is not plain text before any of it is compared or printed.
struct Fingerprint {
  std::string probe_sha256, build_id, model, tokenizer;
};

// Gateway -> node, once the node's proof checks: the root's proof and what the node needs to
// compute (the run's numbers, the tokenizer), so it can compute its fingerprint.
struct JoinWelcome {
  std::string proof;
  std::string run_json;  // RunConfig::to_json()
  std::string tokenizer_kind, tokenizer_data;
};

// Link -> node: one request for a subtree's shards. The weights (`weights_version`, in
// `weight_chunks` chunks) follow unless the node already holds that version.
struct NodeWork {
  uint64_t request = 0;
  StepWork work;
  StepCtl ctl;   // as the coordinator gave it to the link
  ShardSet set;  // with the shards' token windows (a few KB)
  int64_t weights_version = 0;
  int32_t weight_chunks = 0;
  uint64_t weight_bytes = 0;
};

// Link -> node: weights version `version` comes in pieces of `piece_bytes` (spread_pieces): the
// root sends this node its share, pieces [spread_first(n, K, me), spread_first(n, K, me + 1)),
// which the node forwards to every other peer; the other pieces come from them. A node missing
// pieces after a pause asks its link for them (`need`), and says when it has all (`have`).
struct NodeSpread {
  int64_t version = 0;
  uint64_t weight_bytes = 0, piece_bytes = 0;
  std::vector<PeerEndpoint> peers;  // in slot order; this node is peers[me]
  int32_t me = 0;
};

// Link -> node: hand over the partial sum held under `hold_key` (`shards` shards). With one peer
// (the node itself) the whole sum goes to the root; with K, the node sends slice j of
// Slicing(total, K) of its sum to peer j, adds the K - 1 pieces of slice `me` it receives to its
// own, and sends that slice's total to the root. `epoch` names the exchange (pieces of another
// are not added).
struct NodeReduce {
  uint64_t request = 0;
  uint64_t hold_key = 0, epoch = 0;
  int32_t shards = 0;
  std::vector<PeerEndpoint> peers;
  int32_t me = 0;
};

// Node -> link: the pieces of weights `version` it still misses after a pause (a peer that was
// to forward them is gone or slow).
struct NodeNeed {
  int64_t version = 0;
  std::vector<int32_t> pieces;
};

// The pieces a spread of `bytes` bytes over `peers` nodes is cut into (each a whole number of
// floats, at most kChunkBytes, at least one per node), and the first piece of slot `k` (k = peers:
// the count).
uint64_t spread_piece_bytes(uint64_t bytes, int peers);
int32_t spread_first(int32_t pieces, int peers, int k);

// A piece of a large payload: weights (down) or a partial sum (up). The sender's pieces point
// into the whole payload, which they keep alive, so the serializer copies straight from it; the
// receiver's arrive in `bytes`. (A payload of n bytes is ceil(n / kChunkBytes) chunks, in order.)
struct Chunk {
  uint64_t id = 0;  // weights version, or request
  int32_t index = 0;
  uint64_t total = 0;                   // bytes of the whole payload
  std::shared_ptr<const void> payload;  // sending side: the whole payload ...
  const char* data = nullptr;           // ... and this piece of it
  uint64_t size = 0;
  std::vector<char> bytes;  // receiving side

  // The chunks of `bytes` bytes at `data`, kept alive by `owner`.
  static std::vector<Chunk> split(uint64_t id, std::shared_ptr<const void> owner, const void* data,
                                  uint64_t bytes);
};

// Node -> link: the answer to a request. The sum, packed without loss (src/sum_pack.hpp: about
// 55 % of its 8 bytes per parameter), comes first in `sum_chunks` chunks of `sum_bytes` in all
// (grad.sum is empty here); `error` is set when the node could not compute it.
struct NodeResult {
  uint64_t request = 0;
  Partial partial;
  int32_t sum_chunks = 0;
  uint64_t sum_bytes = 0;
  double node_ms = 0;  // from the request's arrival to this answer, on the node
  double cpu_s = 0;    // the node process's CPU time so far (user + system, all threads) ...
  double rss_mb = 0;   // ... and its resident memory, when it answered
  std::string error;
  bool held = false;  // the node keeps the sum (StepCtl::hold_key): no chunks come
};

// The typed interfaces of the cluster's actors (a message outside them is a compile error on the
// sending side; one that arrives from the network anyway is dropped by the receiver's default
// handler).

// A node's link at the root: to the coordinator a member like the local subtree (the sphere
// protocol: a step's shards in, their exact sum out; statistics), plus the end of the run; to its
// node, where the answers and a goodbye arrive (only from that node: checked by the link).
// From the coordinator also: a spread of the weights, and a reduce (answered with the node's
// slice of the exchanged sum, or its whole sum); from the node: pieces it still needs and the
// version it has whole.
using link_actor =
    sphere_actor::extend<caf::replies_to<shutdown_atom>::with<bool>,
                         caf::reacts_to<chunk_atom, Chunk>, caf::reacts_to<result_atom, NodeResult>,
                         caf::reacts_to<leave_atom>,
                         caf::reacts_to<spread_atom, NodeSpread, WeightsRef>,
                         caf::replies_to<reduce_atom, NodeReduce>::with<Partial>,
                         caf::reacts_to<need_atom, NodeNeed>, caf::reacts_to<have_atom, int64_t>>;

// What a node's peers may send it (the interface it is published with): who is dialing (its
// index), a piece of the weights being spread, and a piece of a sum slice (epoch, sender's slot).
using peer_actor =
    caf::typed_actor<caf::reacts_to<peer_atom, int32_t>, caf::reacts_to<wpiece_atom, Chunk>,
                     caf::reacts_to<spiece_atom, uint64_t, int32_t, Chunk>>;

// A node's agent, as its link at the root and its own process talk to it: a request and the
// weights' chunks (only from its link), the end of the run, its spheres' statistics, and leaving
// after the current step (SIGTERM).
using agent_actor =
    peer_actor::extend<caf::reacts_to<work_atom, NodeWork>, caf::reacts_to<chunk_atom, Chunk>,
                       caf::replies_to<shutdown_atom>::with<bool>,
                       caf::replies_to<stats_atom>::with<std::vector<SphereStats>>,
                       caf::reacts_to<leave_atom>, caf::reacts_to<spread_atom, NodeSpread>,
                       caf::reacts_to<reduce_atom, NodeReduce>>;

// Gateway -> node: joined. `link` is the node's peer at the root; work comes from it.
struct JoinAccepted {
  link_actor link;
  int32_t node_index = 0;
};

// The gateway, the one actor the root publishes: the join handshake (hello -> the root's nonce,
// proof -> the root's proof and the run, ready with the fingerprint -> joined).
using gateway_actor =
    caf::typed_actor<caf::replies_to<hello_atom, JoinHello>::with<std::string>,
                     caf::replies_to<proof_atom, std::string>::with<JoinWelcome>,
                     caf::replies_to<ready_atom, Fingerprint>::with<JoinAccepted>>;

// The coordinator's protocol (the root of the tree, above sphere 0 and the remote nodes): a step
// in (work, weights, the shards to compute, its control data), their exact total out; statistics
// as for spheres; nodes joining (from the gateway) and leaving (from their link).
using coordinator_actor = caf::typed_actor<
    caf::replies_to<step_atom, StepWork, WeightsRef, ShardSetRef, StepCtl>::with<Partial>,
    caf::reacts_to<stats_atom, caf::actor, int64_t>,
    caf::reacts_to<join_atom, link_actor, JoinedNode>, caf::reacts_to<leave_atom, caf::actor_addr>,
    caf::replies_to<members_atom>::with<Membership>, caf::replies_to<shutdown_atom>::with<bool>>;

// Whether the message `self` is handling came from `whom`, a peer of the protocol. (Each peer
// answers only the actor it expects: current_sender() is a raw actor pointer, cast to an address
// for this identity check only, never to a handle.)
template <class Self, class Handle>
bool sent_by(Self* self, const Handle& whom) {
  return whom && caf::actor_cast<caf::actor_addr>(self->current_sender()) == whom.address();
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Membership& x) {
  return f(caf::meta::type_name("cllm.membership"), x.nodes, x.spheres);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, JoinedNode& x) {
  return f(caf::meta::type_name("cllm.joined_node"), x.index, x.id, x.host, x.spheres, x.threads,
           x.height, x.peer);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, PeerEndpoint& x) {
  return f(caf::meta::type_name("cllm.peer_endpoint"), x.node, x.host, x.port);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NodeSpread& x) {
  return f(caf::meta::type_name("cllm.node_spread"), x.version, x.weight_bytes, x.piece_bytes,
           x.peers, x.me);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NodeNeed& x) {
  return f(caf::meta::type_name("cllm.node_need"), x.version, x.pieces);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NodeReduce& x) {
  return f(caf::meta::type_name("cllm.node_reduce"), x.request, x.hold_key, x.epoch, x.shards,
           x.peers, x.me);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, JoinHello& x) {
  return f(caf::meta::type_name("cllm.join_hello"), x.protocol, x.node_id, x.host, x.nonce,
           x.spheres, x.fanout, x.threads, x.height, x.peer_host, x.peer_port);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Fingerprint& x) {
  return f(caf::meta::type_name("cllm.fingerprint"), x.probe_sha256, x.build_id, x.model,
           x.tokenizer);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, JoinWelcome& x) {
  return f(caf::meta::type_name("cllm.join_welcome"), x.proof, x.run_json, x.tokenizer_kind,
           x.tokenizer_data);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, JoinAccepted& x) {
  return f(caf::meta::type_name("cllm.join_accepted"), x.link, x.node_index);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NodeWork& x) {
  return f(caf::meta::type_name("cllm.node_work"), x.request, x.work, x.ctl, x.set,
           x.weights_version, x.weight_chunks, x.weight_bytes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Chunk& x) {
  // Raw bytes both ways (one memcpy; a vector of numbers goes element by element in CAF 0.17).
  // Pieces larger than a chunk are refused before anything is allocated.
  uint64_t n = x.data ? x.size : x.bytes.size();
  return f(caf::meta::type_name("cllm.chunk"), x.id, x.index, x.total, n,
           caf::meta::save_callback([&]() -> caf::error {
             if constexpr (std::is_base_of<caf::serializer, Inspector>::value)
               return f.apply_raw(size_t(n), const_cast<char*>(x.data ? x.data : x.bytes.data()));
             return caf::none;
           }),
           caf::meta::load_callback([&]() -> caf::error {
             if constexpr (std::is_base_of<caf::deserializer, Inspector>::value) {
               if (n > kChunkBytes || n > x.total) return caf::sec::invalid_argument;
               x.payload.reset(), x.data = nullptr, x.size = 0;
               x.bytes.resize(size_t(n));
               return f.apply_raw(size_t(n), x.bytes.data());
             }
             return caf::none;
           }));
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NodeResult& x) {
  return f(caf::meta::type_name("cllm.node_result"), x.request, x.partial, x.sum_chunks,
           x.sum_bytes, x.node_ms, x.cpu_s, x.rss_mb, x.error, x.held);
}

}  // namespace cllm
