#include "actors/cluster_root.hpp"

#include <cstring>
#include <deque>
#include <map>
#include <set>

#include <fmt/format.h>

#include "messages/cluster_checks.hpp"
#include "src/clock.hpp"
#include "src/cluster_auth.hpp"
#include "src/hmac.hpp"

namespace cllm {

namespace {

// ---------------------------------------------------------------------------------------------
// The link: the coordinator's member for one node.

struct PendingRequest {
  uint64_t request = 0;
  caf::typed_response_promise<Partial> rp;
  SteadyClock::time_point sent;
  int32_t shards = 0;        // asked for
  bool held = false;         // the node keeps the sum (no chunks come) ...
  SliceRange slice;          // ... or sends these elements of it
  std::vector<char> packed;  // the packed partial sum, as its chunks arrive ...
  PayloadAssembly pieces;    // ... checked here (sized by the first chunk)
  bool sized = false;
  bool have_result = false;
  NodeResult result;
  int64_t bytes_sent = 0, bytes_received = 0;
};

struct LinkState {
  static inline const char* name = "node_link";
  std::shared_ptr<const ClusterSetup> setup;
  agent_actor node;  // the node's agent, on its machine
  JoinedNode info;
  uint64_t next_request = 0;
  int64_t weights_sent = -1;  // the weights version the node holds
  bool has_pending = false;
  PendingRequest pending;
  // The weights being spread over the nodes (kept until the node has them whole: it may ask for
  // pieces a lost peer did not forward), and bytes sent outside a request, counted with the next.
  NodeSpread spread;
  WeightsRef spread_weights;
  int64_t unreported_sent = 0;
};

using link_pointer = link_actor::stateful_pointer<LinkState>;

std::string node_name(const LinkState& st) {
  return fmt::format("node {} ({})", st.info.id, st.info.host);
}

// The windows of the node's shards, sampled here: nodes have no corpus.
std::vector<int32_t> windows_for(const ClusterSetup& setup, const StepWork& work,
                                 const std::vector<int32_t>& shards) {
  const int mb = setup.run.batch.micro_batch;
  std::vector<int32_t> tokens(shards.size() * shard_tokens(setup.run));
  for (size_t i = 0; i < shards.size(); ++i)
    setup.sampler->fill(uint64_t(work.step), uint64_t(shards[i]) * uint64_t(mb), mb,
                        tokens.data() + i * shard_tokens(setup.run));
  return tokens;
}

void fail_pending(link_pointer self, const std::string& why) {
  auto& st = self->state;
  if (!st.has_pending) return;
  st.has_pending = false;
  st.pending.rp.deliver(make_sphere_error(sphere_errc::crashed, caf::make_message(why)));
}

// A new request in flight (answered through pending.rp): the node's answer will carry `shards`
// shards, and the sum kept (`held`) or the elements `slice` of it.
caf::result<Partial> expect_answer(link_pointer self, uint64_t request, int32_t shards, bool held,
                                   SliceRange slice, int64_t bytes_sent) {
  auto& st = self->state;
  st.pending = PendingRequest{};
  st.pending.request = request;
  st.pending.shards = shards;
  st.pending.held = held, st.pending.slice = slice;
  st.pending.rp = self->make_response_promise<Partial>();
  st.pending.sent = SteadyClock::now();
  st.pending.bytes_sent = bytes_sent + std::exchange(st.unreported_sent, 0);
  st.has_pending = true;
  return caf::delegated<Partial>();
}

caf::result<Partial> on_step(link_pointer self, const StepWork& work, const WeightsRef& weights,
                             const AssignmentRef& assignment, const StepCtl& ctl) {
  auto& st = self->state;
  fail_pending(self, "superseded by a new request");
  NodeWork w;
  w.request = ++st.next_request;
  w.work = work, w.ctl = ctl;
  w.set.shards = assignment->set.shards;
  w.set.tokens = windows_for(*st.setup, work, w.set.shards);
  // Weights change only when a step is applied; another attempt at the same step reuses them.
  const bool send_weights = st.weights_sent != work.step;
  const size_t weight_bytes = weights->size() * sizeof(float);
  std::vector<Chunk> chunks;  // pieces of the shared weights: no copy before the serializer
  if (send_weights)
    chunks = Chunk::split(uint64_t(work.step), weights, weights->data(), weight_bytes);
  w.weights_version = work.step;
  w.weight_chunks = int32_t(chunks.size());
  w.weight_bytes = send_weights ? weight_bytes : 0;
  const auto whole = reduce_slice(st.setup->run, 1, 0);
  auto answer = expect_answer(
      self, w.request, int32_t(w.set.shards.size()), ctl.hold_key != 0, whole,
      int64_t(w.set.tokens.size() * sizeof(int32_t) + (send_weights ? weight_bytes : 0)));
  self->send(st.node, work_atom::value, std::move(w));
  for (auto& c : chunks) self->send(st.node, chunk_atom::value, std::move(c));
  st.weights_sent = work.step;
  return answer;
}

void send_weight_pieces(link_pointer self, const std::vector<int32_t>& which);

// The weights of a step go to the nodes as pieces: this node gets its share from here and
// forwards it to the others (actors/node_agent.cpp); work for the step then carries none.
void on_spread(link_pointer self, NodeSpread& s, const WeightsRef& weights) {
  auto& st = self->state;
  const uint64_t pieces = (s.weight_bytes + s.piece_bytes - 1) / s.piece_bytes;
  const int k = int(s.peers.size());
  std::vector<int32_t> share;
  for (int32_t i = spread_first(int32_t(pieces), k, s.me);
       i < spread_first(int32_t(pieces), k, s.me + 1); ++i)
    share.push_back(i);
  st.spread = s, st.spread_weights = weights;
  st.weights_sent = s.version;
  self->send(st.node, spread_atom::value, std::move(s));
  send_weight_pieces(self, share);
}

// Pieces `which` of the weights being spread, straight from the shared buffer.
void send_weight_pieces(link_pointer self, const std::vector<int32_t>& which) {
  auto& st = self->state;
  const NodeSpread& s = st.spread;
  if (!st.spread_weights) return;
  const char* base = reinterpret_cast<const char*>(st.spread_weights->data());
  std::vector<bool> sent((s.weight_bytes + s.piece_bytes - 1) / s.piece_bytes);
  for (int32_t i : which) {  // (each piece once, however often a node names it)
    if (i < 0 || size_t(i) >= sent.size() || sent[size_t(i)]) continue;
    sent[size_t(i)] = true;
    const uint64_t at = uint64_t(i) * s.piece_bytes;
    Chunk c;
    c.id = uint64_t(s.version), c.index = i, c.total = s.weight_bytes;
    c.payload = st.spread_weights, c.data = base + at;
    c.size = std::min(s.piece_bytes, s.weight_bytes - at);
    st.unreported_sent += int64_t(c.size);
    self->send(st.node, chunk_atom::value, std::move(c));
  }
}

// The node's share of the exchanged sum (or its whole sum, alone), for the coordinator.
caf::result<Partial> on_reduce(link_pointer self, NodeReduce& r) {
  auto& st = self->state;
  fail_pending(self, "superseded by a new request");
  r.request = ++st.next_request;
  auto answer = expect_answer(self, r.request, r.shards, false,
                              reduce_slice(st.setup->run, int(r.peers.size()), r.me), 0);
  self->send(st.node, reduce_atom::value, std::move(r));
  return answer;
}

void maybe_deliver(link_pointer self) {
  auto& st = self->state;
  PendingRequest& p = st.pending;
  // The node sends its sum's chunks, then its result: all chunks came before the result.
  if (!st.has_pending || !p.have_result) return;
  st.has_pending = false;
  if (const auto bad = result_problem(st.setup->run, p.shards, p.held, p.pieces, p.result);
      !bad.empty()) {
    p.rp.deliver(make_sphere_error(
        sphere_errc::crashed,
        caf::make_message(fmt::format("{} sent a malformed answer: {}", node_name(st), bad))));
    return;
  }
  if (!p.result.error.empty()) {
    p.rp.deliver(make_sphere_error(sphere_errc::crashed, caf::make_message(p.result.error)));
    return;
  }
  Partial out = std::move(p.result.partial);
  out.grad.begin = p.slice.begin;
  if (const auto bad =
          p.held ? std::string() : unpack_partial_sum(p.slice.size(), p.packed, out.grad.sum);
      !bad.empty()) {
    p.rp.deliver(make_sphere_error(
        sphere_errc::crashed,
        caf::make_message(fmt::format("{} sent a malformed answer: {}", node_name(st), bad))));
    return;
  }
  // Time spent on the node's behalf beyond its own step: transfers and (de)serialisation.
  const double round_trip = ms_since(p.sent);
  out.timing.network_ms += std::max(0.0, round_trip - p.result.node_ms);
  out.timing.bytes_sent += p.bytes_sent;
  out.timing.bytes_received += p.bytes_received;
  out.timing.nodes.push_back(NodeUsage{st.info.index, p.result.cpu_s, p.result.rss_mb});
  p.rp.deliver(std::move(out));
}

void on_node_down(link_pointer self, const caf::down_msg& dm) {
  if (dm.source != self->state.node.address()) return;
  const std::string why =
      fmt::format("its connection was lost ({})", self->system().render(dm.reason));
  fail_pending(self, why);
  self->state.node = nullptr;
  if (as_node_exit(dm.reason)) {  // it ended on purpose (left, run over)
    self->quit();
    return;
  }
  self->quit(make_sphere_error(sphere_errc::crashed, caf::make_message(why)));
}

// From the coordinator: the run is over. The node is told (and given a moment to hear it), so
// that it does not keep dialing a root that is gone.
caf::result<bool> on_shutdown(link_pointer self) {
  auto rp = self->make_response_promise<bool>();
  agent_actor node = std::exchange(self->state.node, nullptr);
  if (!node) {
    rp.deliver(true);
    return rp;
  }
  self->request(node, std::chrono::seconds(2), shutdown_atom::value)
      .then([=](bool) mutable { rp.deliver(true); },
            [=](caf::error&) mutable { rp.deliver(true); });
  return rp;
}

// The node's spheres, each tagged with the node; the first report counts them.
void on_stats(link_pointer self, const caf::actor& collector) {
  self->request(self->state.node, std::chrono::seconds(5), stats_atom::value)
      .then(
          [self, collector](std::vector<SphereStats>& all) {
            caf::anon_send(collector, stats_atom::value, SphereStats::count_only(),
                           int32_t(all.size()));
            for (auto& s : all) {
              s.node = self->state.info.index, s.host = self->state.info.host;
              caf::anon_send(collector, stats_atom::value, std::move(s), int32_t(0));
            }
          },
          [collector](caf::error&) {
            caf::anon_send(collector, stats_atom::value, SphereStats::count_only(), int32_t(0));
          });
}

link_actor::behavior_type link_behavior(link_pointer self,
                                        std::shared_ptr<const ClusterSetup> setup, agent_actor node,
                                        JoinedNode info) {
  auto& st = self->state;
  st.setup = std::move(setup);
  st.node = std::move(node);
  st.info = std::move(info);
  self->monitor(st.node);
  self->set_default_handler(caf::drop);  // a stray message from the network is not an error
  self->set_down_handler([self](caf::down_msg& dm) { on_node_down(self, dm); });
  // Only the node this link stands for may answer it.
  const auto from_node = [self] { return sent_by(self, self->state.node); };
  return {
      [self](step_atom, const StepWork& work, const WeightsRef& weights,
             const AssignmentRef& assignment, const StepCtl& ctl) -> caf::result<Partial> {
        return on_step(self, work, weights, assignment, ctl);
      },
      [self, from_node](chunk_atom, Chunk& c) {
        auto& p = self->state.pending;
        if (!from_node() || !self->state.has_pending || c.id != p.request) return;
        // A chunk that is not a piece of the sum this request expects is dropped (and the
        // answer, missing it, is refused as malformed).
        if (!p.sized) {  // the packed size is the node's to say, within the model's bound
          p.pieces = p.held ? PayloadAssembly() : sum_assembly(p.slice.size(), c.total);
          p.sized = true;
        }
        const int64_t at = p.pieces.place(c.total, c.index, c.bytes.size());
        if (at < 0) return;
        if (p.packed.empty()) p.packed.resize(p.pieces.bytes());
        std::memcpy(p.packed.data() + at, c.bytes.data(), c.bytes.size());
        p.bytes_received += int64_t(c.bytes.size());
      },
      [self, from_node](result_atom, NodeResult& r) {
        auto& p = self->state.pending;
        if (!from_node() || !self->state.has_pending || r.request != p.request) return;
        p.result = std::move(r);
        p.have_result = true;
        maybe_deliver(self);
      },
      [self](shutdown_atom) -> caf::result<bool> { return on_shutdown(self); },
      [self, from_node](leave_atom) {
        if (!from_node()) return;
        self->send(self->state.setup->coordinator, leave_atom::value, self->address());
      },
      [self](stats_atom, const caf::actor& collector, int64_t) { on_stats(self, collector); },
      [self](spread_atom, NodeSpread& s, const WeightsRef& w) { on_spread(self, s, w); },
      [self](reduce_atom, NodeReduce& r) -> caf::result<Partial> { return on_reduce(self, r); },
      [self, from_node](need_atom, const NodeNeed& n) {
        if (from_node() && n.version == self->state.spread.version)
          send_weight_pieces(self, n.pieces);
      },
      [self, from_node](have_atom, int64_t version) {
        if (from_node() && version == self->state.spread.version)
          self->state.spread_weights.reset();
      },
  };
}

// ---------------------------------------------------------------------------------------------
// The gateway: the join handshake.

struct Candidate {
  JoinHello hello;
  std::string root_nonce;
  bool proven = false;
  SteadyClock::time_point since;
};

struct GatewayState {
  static inline const char* name = "gateway";
  std::shared_ptr<const ClusterSetup> setup;
  std::map<caf::actor_addr, Candidate> candidates;  // peers in the handshake, by their actor
  std::map<std::string, link_actor> members;        // node id -> link, while it lives
  int32_t next_index = 0;
};

// Its own message on top of the interface: tell the coordinator of a node once the node's
// JoinAccepted is on its way (see on_ready).
using gateway_impl = gateway_actor::extend<caf::reacts_to<join_atom, link_actor, JoinedNode>>;
using gateway_pointer = gateway_impl::stateful_pointer<GatewayState>;

caf::error refuse(gateway_pointer self, const std::string& who, const std::string& why) {
  if (self->state.setup->log) self->state.setup->log(fmt::format("refused {}: {}", who, why));
  return make_node_error(node_exit::refused, why);
}

caf::result<std::string> on_hello(gateway_pointer self, JoinHello& h) {
  auto& st = self->state;
  if (const auto bad = hello_problem(h); !bad.empty()) return refuse(self, hello_who(h), bad);
  // A bounded list of peers in the handshake: the oldest goes first.
  while (st.candidates.size() >= 64) {
    auto oldest = st.candidates.begin();
    for (auto it = st.candidates.begin(); it != st.candidates.end(); ++it)
      if (it->second.since < oldest->second.since) oldest = it;
    st.candidates.erase(oldest);
  }
  Candidate c;
  c.hello = std::move(h);
  c.root_nonce = random_hex(16);
  c.since = SteadyClock::now();
  const std::string nonce = c.root_nonce;
  st.candidates[caf::actor_cast<caf::actor_addr>(self->current_sender())] = std::move(c);
  return nonce;
}

caf::result<JoinWelcome> on_proof(gateway_pointer self, const std::string& proof) {
  auto& st = self->state;
  auto it = st.candidates.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
  if (it == st.candidates.end()) return refuse(self, "a peer", "no hello came first");
  Candidate& c = it->second;
  const std::string who = fmt::format("node {} ({})", c.hello.node_id, c.hello.host);
  const std::string expected =
      node_join_proof(st.setup->key, c.root_nonce, c.hello.nonce, c.hello.node_id);
  if (!constant_time_equal(proof, expected)) {
    st.candidates.erase(it);
    return refuse(self, who, "wrong cluster key");
  }
  c.proven = true;
  JoinWelcome w;
  w.proof = root_join_proof(st.setup->key, c.root_nonce, c.hello.nonce, c.hello.node_id);
  w.run_json = st.setup->run.to_json().dump();
  w.tokenizer_kind = st.setup->tokenizer_kind;
  w.tokenizer_data = st.setup->tokenizer_data;
  return w;
}

caf::result<JoinAccepted> on_ready(gateway_pointer self, const Fingerprint& fp) {
  auto& st = self->state;
  const auto sender = caf::actor_cast<caf::actor_addr>(self->current_sender());
  auto it = st.candidates.find(sender);
  if (it == st.candidates.end() || !it->second.proven)
    return refuse(self, "a peer", "it has not proven the cluster key");
  const Candidate c = std::move(it->second);
  st.candidates.erase(it);
  const std::string who = fmt::format("node {} ({})", c.hello.node_id, c.hello.host);
  const NumericsFingerprint mine = st.setup->fingerprint;
  const auto diff = fingerprint_differences(mine, fingerprint_from_wire(fp));
  if (!diff.empty()) {
    std::string list;
    for (const auto& d : diff) list += (list.empty() ? "" : "; ") + d;
    return refuse(self, who, "its numerics differ from the root's: " + list);
  }
  if (st.members.count(c.hello.node_id))
    return refuse(self, who,
                  fmt::format("node id '{}' is already in the cluster", c.hello.node_id));
  JoinedNode info;
  info.index = ++st.next_index;
  info.id = c.hello.node_id, info.host = c.hello.host;
  info.spheres = c.hello.spheres, info.threads = c.hello.threads, info.height = c.hello.height;
  info.peer = PeerEndpoint{info.index, c.hello.peer_host, c.hello.peer_port};
  // The sender of `ready` is the node's agent. It is a proxy of a remote actor, whose interface
  // CAF cannot check at run time: whatever it answers is checked by the link (cluster_checks).
  auto node = caf::actor_cast<agent_actor>(self->current_sender());
  link_actor link = self->spawn(link_behavior, st.setup, node, info);
  self->monitor(link);
  st.members[info.id] = link;
  // The coordinator hears of the node after this answer is sent (a message to itself is handled
  // after this handler returns): the node knows its link before the link's first message.
  self->send(self, join_atom::value, link, info);
  return JoinAccepted{link, info.index};
}

gateway_impl::behavior_type gateway_behavior(gateway_pointer self,
                                             std::shared_ptr<const ClusterSetup> setup) {
  self->state.setup = std::move(setup);
  self->set_default_handler(caf::drop);               // anything else from an unauthenticated peer
  self->set_down_handler([self](caf::down_msg& dm) {  // a link ended: its node id is free again
    auto& m = self->state.members;
    for (auto it = m.begin(); it != m.end(); ++it)
      if (it->second.address() == dm.source) {
        m.erase(it);
        return;
      }
  });
  return {
      [self](hello_atom, JoinHello& h) { return on_hello(self, h); },
      [self](proof_atom, const std::string& proof) { return on_proof(self, proof); },
      [self](ready_atom, const Fingerprint& fp) { return on_ready(self, fp); },
      [self](join_atom, link_actor& link, JoinedNode& info) {
        if (caf::actor_cast<caf::actor_addr>(self->current_sender()) != self->address()) return;
        self->send(self->state.setup->coordinator, join_atom::value, std::move(link),
                   std::move(info));
      },
  };
}

}  // namespace

gateway_actor spawn_gateway(caf::actor_system& sys, std::shared_ptr<const ClusterSetup> setup) {
  return sys.spawn(gateway_behavior, std::move(setup));
}

}  // namespace cllm
