#include "actors/node_agent.hpp"

#include <algorithm>
#include <csignal>
#include <cstring>

#include <fmt/format.h>
#include <caf/io/all.hpp>

#include "actors/cluster_root.hpp"
#include "actors/coordinator.hpp"
#include "messages/cluster.hpp"
#include "messages/cluster_checks.hpp"
#include "src/clock.hpp"
#include "src/cluster_auth.hpp"
#include "src/cluster_guard.hpp"
#include "src/fingerprint.hpp"
#include "src/hmac.hpp"
#include "src/process_usage.hpp"
#include "src/sum_pack.hpp"

namespace cllm {

namespace {

using dial_atom = caf::atom_constant<caf::atom("dial")>;
using check_atom = caf::atom_constant<caf::atom("check")>;
using xcheck_atom = caf::atom_constant<caf::atom("xcheck")>;
using late_atom = caf::atom_constant<caf::atom("late")>;
constexpr auto kHandshakeTimeout = std::chrono::seconds(30);
constexpr auto kStatsTimeout = std::chrono::seconds(10);
constexpr auto kPeerDialTimeout = std::chrono::seconds(10);
// A spread with no new piece for this long asks the root for the missing ones (a peer that was to
// forward them is gone or stuck).
constexpr double kSpreadStallS = 2.0;
// An exchange with no new piece of this node's slice for this long fails (the root then asks
// for whole sums): a peer that cannot reach this node costs a pause, not the root's hand-over
// timeout. Pieces are at most 4 MiB, so this is slack even for links of a few Mbit/s.
constexpr double kExchangeStallS = 10.0;

// The agent's own messages on top of its interface: dial (again), end after answering the root's
// shutdown, look at a spread's or an exchange's progress, and (tests) answer late.
using agent_impl =
    agent_actor::extend<caf::reacts_to<dial_atom>, caf::reacts_to<shutdown_atom, bool>,
                        caf::reacts_to<check_atom, int64_t>, caf::reacts_to<xcheck_atom, uint64_t>,
                        caf::reacts_to<late_atom>>;

// Weights arriving in pieces for one version, straight into the buffer the spheres will read:
// from the link alone, or spread (this node's share from the link, the rest from the peers).
struct WeightsInFlight {
  int64_t version = -1;
  PayloadAssembly pieces;
  std::shared_ptr<AlignedVector<float>> weights;
  bool spread = false;
  NodeSpread plan;          // when spread
  double last_piece_s = 0;  // when a piece last came (a stalled spread asks for the rest)
};

// The partial sum this node keeps for the root (StepCtl::hold_key) until it is asked for it.
struct HeldSum {
  uint64_t key = 0;
  ExactGrad grad;
};

// A piece of a sum slice from a peer, kept until this node's reduce of that epoch begins.
struct EarlyPiece {
  uint64_t epoch = 0;
  int32_t from = 0;    // the sender's slot ...
  int32_t sender = 0;  // ... and node, checked against the exchange's slots once it begins
  Chunk chunk;
};

// One exchange of held sums: the slice this node totals, and the pieces of it from each peer.
struct ReduceInFlight {
  bool active = false;
  NodeReduce req;
  SliceRange slice;
  ExactGrad counts;            // of the kept sum, as the exchange began
  std::vector<int64_t> total;  // this node's own part, then every peer's added
  std::vector<PayloadAssembly> pieces;
  std::vector<std::vector<char>> packed;
  std::vector<bool> sized, added;
  int32_t missing = 0;
  double last_piece_s = 0;  // when a piece last came (a stalled exchange fails)
};

struct AgentState {
  static inline const char* name = "node_agent";
  ~AgentState() {  // the subtree ends with the agent (the process waits for every actor)
    if (local) caf::anon_send_exit(local, caf::exit_reason::kill);
  }
  NodeOptions opt;
  // The connection.
  gateway_actor gateway;
  link_actor link;
  double first_failure_s = -1;  // when dialing started failing (reconnect timeout)
  double backoff_s = 0.25;
  std::string nonce, root_nonce;
  // The run, as the root described it, and the subtree that computes it.
  std::string run_json;
  RunConfig run;
  coordinator_actor local;
  // Serving.
  int64_t weights_version = -1;
  WeightsRef weights;
  WeightsInFlight incoming;
  bool has_work = false, computing = false;
  NodeWork work;
  SteadyClock::time_point work_since;
  bool leaving = false;
  // Peers: other nodes of the run, reached directly (the lower index dials the higher one and
  // says who it is; the higher one answers through that connection).
  int32_t my_index = 0;
  uint16_t peer_port = 0;  // where peers reach this node (published; 0: not yet)
  std::unique_ptr<ClusterGuard> peer_guard;
  std::map<int32_t, peer_actor> peers;
  std::map<int32_t, std::unique_ptr<GuardDialer>> peer_dialers;
  std::set<int32_t> dialing;
  std::map<int32_t, std::vector<std::function<void(const peer_actor&)>>> waiting;
  std::vector<Chunk> early_weights;  // pieces of a newer version than the spread in flight
  std::vector<EarlyPiece> early_sums;
  uint64_t early_sum_bytes = 0;
  HeldSum held;
  ReduceInFlight reduce;
  uint64_t last_epoch = 0;  // the newest exchange begun here (older pieces are stale)
  int exchanges = 0;
  std::function<void()> late_answer;  // tests (slow_factor): the answer, sent later
};

using agent_pointer = agent_impl::stateful_pointer<AgentState>;

void dial(agent_pointer self);
void forget_peers(agent_pointer self);

// ---------------------------------------------------------------------------------------------
// Joining

// The root is gone or never answered: dial again after a pause, until the reconnect timeout.
void retry(agent_pointer self, const std::string& why) {
  auto& st = self->state;
  if (st.gateway) self->demonitor(st.gateway.address());
  if (st.link) self->demonitor(st.link.address());
  st.gateway = nullptr, st.link = nullptr;
  st.has_work = st.computing = false;
  forget_peers(self);  // the root numbers the nodes afresh when they join again
  const double now = seconds_now();
  if (st.first_failure_s < 0) st.first_failure_s = now;
  if (now - st.first_failure_s > st.opt.reconnect_timeout_s) {
    self->quit(make_node_error(
        node_exit::no_root, fmt::format("no root at {}:{} for {:g} s ({}); giving up", st.opt.host,
                                        st.opt.port, st.opt.reconnect_timeout_s, why)));
    return;
  }
  self->delayed_send(self, std::chrono::milliseconds(int64_t(st.backoff_s * 1000)),
                     dial_atom::value);
  st.backoff_s = std::min(5.0, st.backoff_s * 2);
}

// An error answering the handshake: a refusal ends the node; anything else (the root went away
// mid-handshake) means dialing again.
void on_handshake_error(agent_pointer self, const caf::error& err) {
  const std::string text = exit_reason_text(self->system(), err);
  if (as_node_exit(err) == node_exit::refused) {
    self->quit(make_node_error(node_exit::refused, "the root refused: " + text));
    return;
  }
  retry(self, text);
}

// The subtree for the root's run: kept across reconnections to the same run.
void prepare_subtree(agent_pointer self, const std::string& run_json, RunConfig run) {
  auto& st = self->state;
  if (st.local && run_json == st.run_json) return;
  run.recompute = st.opt.recompute;
  if (st.local) {
    self->demonitor(st.local.address());
    self->send_exit(st.local, caf::exit_reason::kill);
  }
  auto tree =
      std::make_shared<TreeSetup>(TreeSetup{run, Topology(st.opt.spheres, st.opt.fanout),
                                            st.opt.placement, nullptr, FaultPlan{}, st.opt.policy});
  CoordinatorSetup cs;
  cs.run = run, cs.local = std::move(tree), cs.local_capacity = st.opt.threads;
  st.local = spawn_coordinator(self->system(), std::move(cs)).steps;
  self->monitor(st.local);
  st.run_json = run_json, st.run = std::move(run);
  st.weights_version = -1, st.weights.reset();
}

void on_welcome(agent_pointer self, JoinWelcome& w) {
  auto& st = self->state;
  const std::string expected = root_join_proof(st.opt.key, st.root_nonce, st.nonce, st.opt.node_id);
  if (!constant_time_equal(w.proof, expected)) {
    self->quit(make_node_error(node_exit::refused,
                               "the root did not prove that it holds the cluster key"));
    return;
  }
  RunConfig run;
  if (const auto bad = welcome_problem(w, run); !bad.empty()) {
    self->quit(make_node_error(node_exit::refused, bad));
    return;
  }
  prepare_subtree(self, w.run_json, run);
  const NumericsFingerprint fp =
      numerics_fingerprint(st.run, w.tokenizer_kind, w.tokenizer_data, st.opt.perturb_probe);
  self->request(st.gateway, kHandshakeTimeout, ready_atom::value,
                Fingerprint{fp.probe_sha256, fp.build_id, fp.model, fp.tokenizer})
      .then(
          [self](JoinAccepted& a) {
            auto& s = self->state;
            s.link = a.link;
            s.my_index = a.node_index;
            self->monitor(s.link);
            s.first_failure_s = -1, s.backoff_s = 0.25;
            std::fprintf(stderr, "cllm node: joined the root at %s:%u as node %d\n",
                         s.opt.host.c_str(), unsigned(s.opt.port), int(a.node_index));
          },
          [self](caf::error& err) { on_handshake_error(self, err); });
}

void say_hello(agent_pointer self) {
  auto& st = self->state;
  st.nonce = random_hex(16);
  JoinHello h;
  h.node_id = st.opt.node_id, h.host = st.opt.node_host, h.nonce = st.nonce;
  h.spheres = st.opt.spheres, h.fanout = st.opt.fanout, h.threads = st.opt.threads;
  h.height = Topology(st.opt.spheres, st.opt.fanout).height(0);
  if (st.peer_port != 0) h.peer_host = st.opt.peer_host, h.peer_port = st.peer_port;
  self->request(st.gateway, kHandshakeTimeout, hello_atom::value, h)
      .then(
          [self](std::string& root_nonce) {
            auto& s = self->state;
            s.root_nonce = root_nonce;
            const std::string proof =
                node_join_proof(s.opt.key, root_nonce, s.nonce, s.opt.node_id);
            self->request(s.gateway, kHandshakeTimeout, proof_atom::value, proof)
                .then([self](JoinWelcome& w) { on_welcome(self, w); },
                      [self](caf::error& err) { on_handshake_error(self, err); });
          },
          [self](caf::error& err) { on_handshake_error(self, err); });
}

void dial(agent_pointer self) {
  auto& st = self->state;
  auto mm = cluster_dialer(self->system());
  self->request(mm, std::chrono::seconds(10), caf::connect_atom::value, st.opt.host, st.opt.port)
      .then(
          [self](const caf::node_id&, caf::strong_actor_ptr& gw,
                 const std::set<std::string>& interface) {
            if (!gw) return retry(self, "nothing is published there");
            // What remote_actor<gateway_actor> checks: the published actor's interface.
            if (!self->system().assignable<gateway_actor>(interface))
              return self->quit(
                  make_node_error(node_exit::refused,
                                  "the actor published there is no gateway of this build's "
                                  "cluster protocol"));
            self->state.gateway = caf::actor_cast<gateway_actor>(gw);
            self->monitor(self->state.gateway);
            say_hello(self);
          },
          [self](caf::error& err) {
            // A refusal at the TLS level ends the node; anything else means dialing again.
            const auto& o = self->state.opt;
            const bool relayed = !o.root_host.empty();
            self->request(spawn_tls_prober(self->system(), o.tls), caf::infinite,
                          relayed ? o.root_host : o.host, relayed ? o.root_port : o.port)
                .then([self, why = self->system().render(err)](const std::string& refusal) {
                  if (!refusal.empty())
                    return self->quit(make_node_error(node_exit::refused, refusal));
                  retry(self, why);
                });
          });
}

// ---------------------------------------------------------------------------------------------
// Peers: the other nodes, reached directly for the exchanges (through the cluster key's guard,
// or TLS, as the root is). One connection per pair: the lower index dials and says who it is.

void peer_lost(agent_pointer self, int32_t node, const std::string& why);

void add_peer(agent_pointer self, int32_t node, peer_actor handle) {
  auto& st = self->state;
  // A node that joined again under a new number is the same agent, reached over the same CAF
  // connection: its old number goes, or its messages would be taken for the old number's.
  for (auto it = st.peers.begin(); it != st.peers.end();)
    if (it->first != node && it->second.address() == handle.address()) {
      self->demonitor(it->second.address());
      it = st.peers.erase(it);
    } else {
      ++it;
    }
  peer_actor& slot = st.peers[node];
  if (slot) self->demonitor(slot.address());
  slot = std::move(handle);
  self->monitor(slot);
  auto waiting = std::move(st.waiting[node]);
  st.waiting.erase(node);
  for (auto& deliver : waiting) deliver(slot);
}

void reach_peer(agent_pointer self, const PeerEndpoint& p) {
  auto& st = self->state;
  if (st.my_index <= 0 || p.node <= st.my_index || st.peers.count(p.node) ||
      st.dialing.count(p.node))
    return;
  std::string host = p.host;
  uint16_t port = p.port;
  if (!st.opt.key.empty()) {  // through a local relay that answers the peer's guard
    try {
      auto relay = std::make_unique<GuardDialer>(p.host, p.port, st.opt.key);
      host = "127.0.0.1", port = relay->port();
      st.peer_dialers[p.node] = std::move(relay);
    } catch (const std::exception& e) {
      return peer_lost(self, p.node, e.what());
    }
  }
  st.dialing.insert(p.node);
  const int32_t node = p.node;
  self->request(cluster_dialer(self->system()), kPeerDialTimeout, caf::connect_atom::value, host,
                port)
      .then(
          [self, node](const caf::node_id&, caf::strong_actor_ptr& h,
                       const std::set<std::string>& interface) {
            self->state.dialing.erase(node);
            if (!h || !self->system().assignable<peer_actor>(interface))
              return peer_lost(self, node, "no node is published there");
            auto handle = caf::actor_cast<peer_actor>(h);
            self->send(handle, peer_atom::value, self->state.my_index);
            add_peer(self, node, std::move(handle));
          },
          [self, node](caf::error& err) {
            self->state.dialing.erase(node);
            peer_lost(self, node, self->system().render(err));
          });
}

// Runs `deliver` with peer p's handle, now or once it is reached.
void to_peer(agent_pointer self, const PeerEndpoint& p,
             std::function<void(const peer_actor&)> deliver) {
  auto& st = self->state;
  if (auto it = st.peers.find(p.node); it != st.peers.end()) return deliver(it->second);
  st.waiting[p.node].push_back(std::move(deliver));
  reach_peer(self, p);
}

// The index of the peer that sent the current message, or -1.
int32_t sending_peer(agent_pointer self) {
  for (const auto& [node, handle] : self->state.peers)
    if (sent_by(self, handle)) return node;
  return -1;
}

void forget_peers(agent_pointer self) {
  auto& st = self->state;
  for (const auto& kv : st.peers) self->demonitor(kv.second.address());
  st.peers.clear(), st.peer_dialers.clear(), st.dialing.clear(), st.waiting.clear();
  st.early_weights.clear(), st.early_sums.clear(), st.early_sum_bytes = 0;
  st.reduce = ReduceInFlight{};
  st.held = HeldSum{};
  if (st.incoming.spread) st.incoming = WeightsInFlight{};  // its plan named the old indices
}

// ---------------------------------------------------------------------------------------------
// Serving

void send_answer(agent_pointer self, NodeResult r, const int64_t* sum, size_t n) {
  auto& st = self->state;
  auto owner = std::make_shared<std::vector<char>>();
  if (n > 0) pack_sums(sum, n, *owner);  // lossless: the root unpacks the same integers
  // Pieces of the packed sum itself: the serializer copies straight from it.
  auto chunks = Chunk::split(r.request, owner, owner->data(), owner->size());
  r.sum_chunks = int32_t(chunks.size());
  r.sum_bytes = owner->size();
  r.node_ms = ms_since(st.work_since);
  r.cpu_s = process_cpu_s(), r.rss_mb = current_rss_mb();
  for (auto& c : chunks) self->send(st.link, chunk_atom::value, std::move(c));
  self->send(st.link, result_atom::value, std::move(r));
}

// The answer to a request for shards. A node asked to leave goes after it; one that keeps a sum
// for the root stays until the root ends its link (between steps), so the sum is not lost.
void send_result(agent_pointer self, NodeResult r, const int64_t* sum, size_t n) {
  auto& st = self->state;
  send_answer(self, std::move(r), sum, n);
  st.has_work = st.computing = false;
  if (!st.leaving) return;
  self->send(st.link, leave_atom::value);
  if (st.held.key == 0)
    self->quit(make_node_error(node_exit::left, "left the cluster after its step, as asked"));
}

void fail_work(agent_pointer self, const std::string& why) {
  NodeResult r;
  r.request = self->state.work.request;
  r.error = fmt::format("node {}: {}", self->state.opt.node_id, why);
  send_result(self, std::move(r), nullptr, 0);
}

// A partial sum the root asked this node to keep: added to what it holds under the same key.
// The answer carries only its counts.
void keep_sum(agent_pointer self, Partial& p) {
  auto& st = self->state;
  HeldSum& held = st.held;
  const uint64_t key = st.work.ctl.hold_key;
  ExactGrad counts = p.grad.without_sum();
  if (held.key != key || held.grad.shards == 0) {
    held.key = key;
    held.grad = std::move(p.grad);
  } else {
    held.grad.merge(p.grad);
  }
  NodeResult r;
  r.request = st.work.request;
  r.held = true;
  p.grad = std::move(counts);
  r.partial = std::move(p);
  send_result(self, std::move(r), nullptr, 0);
}

// Tests: the answer to the work in flight, after (slow_factor - 1) times the time it took, as a
// slower machine would give it; dropped if that work is gone by then.
void answer_late(agent_pointer self, std::function<void()> answer) {
  auto& st = self->state;
  const auto delay =
      std::chrono::microseconds(int64_t(ms_since(st.work_since) * 1000 * (st.opt.slow_factor - 1)));
  st.late_answer = [self, request = st.work.request, answer = std::move(answer)] {
    if (self->state.has_work && self->state.work.request == request) answer();
  };
  self->delayed_send(self, delay, late_atom::value);
}

void compute(agent_pointer self) {
  auto& st = self->state;
  if (!st.has_work || st.computing || st.weights_version != st.work.weights_version) return;
  st.computing = true;
  auto set = std::make_shared<ShardSet>(st.work.set);
  self->request(st.local, caf::infinite, step_atom::value, st.work.work, st.weights,
                ShardSetRef(std::move(set)), st.work.ctl)
      .then(
          [self](Partial& p) {
            auto answer = [self, p = std::make_shared<Partial>(std::move(p))] {
              if (self->state.work.ctl.hold_key != 0) return keep_sum(self, *p);
              NodeResult r;
              r.request = self->state.work.request;
              std::vector<int64_t> sum = std::move(p->grad.sum);
              r.partial = std::move(*p);
              send_result(self, std::move(r), sum.data(), sum.size());
            };
            if (self->state.opt.slow_factor > 1) return answer_late(self, std::move(answer));
            answer();
          },
          [self](caf::error& err) { fail_work(self, exit_reason_text(self->system(), err)); });
}

void on_work(agent_pointer self, NodeWork& w) {
  auto& st = self->state;
  st.work_since = SteadyClock::now();
  st.work = std::move(w);
  st.has_work = true, st.computing = false;
  // Weights that come with the work replace any spread in flight (a node that joined again).
  const bool whole = st.work.weight_bytes > 0;
  const int64_t spreading = st.incoming.spread && !whole ? st.incoming.version : -1;
  // Checked before anything of it is used.
  if (const auto bad = work_problem(st.run, st.weights_version, spreading, st.work); !bad.empty())
    return fail_work(self, bad);
  if (st.work.weights_version != st.weights_version && st.work.weights_version != spreading) {
    st.incoming = WeightsInFlight{};
    st.incoming.version = st.work.weights_version;
    st.incoming.pieces = weights_assembly(st.work);
    st.incoming.weights =
        std::make_shared<AlignedVector<float>>(st.work.weight_bytes / sizeof(float));
  }
  compute(self);
}

// ---------------------------------------------------------------------------------------------
// Weights: from the link alone, or spread (this node's share from the link, which it forwards to
// every other peer; the other shares from them).

void forward_piece(agent_pointer self, int32_t index, int64_t at, size_t size) {
  auto& st = self->state;
  const NodeSpread& plan = st.incoming.plan;
  const int32_t n = int32_t(st.incoming.pieces.pieces());
  const int k = int(plan.peers.size());
  if (index < spread_first(n, k, plan.me) || index >= spread_first(n, k, plan.me + 1)) return;
  if (st.opt.withhold_weights) return;
  Chunk c;
  c.id = uint64_t(plan.version), c.index = index, c.total = plan.weight_bytes;
  // A piece of the buffer being filled: later pieces land elsewhere in it, never here.
  c.payload = st.incoming.weights;
  c.data = reinterpret_cast<const char*>(st.incoming.weights->data()) + at;
  c.size = size;
  for (int j = 0; j < k; ++j)
    if (j != plan.me)
      to_peer(self, plan.peers[size_t(j)],
              [self, c](const peer_actor& p) { self->send(p, wpiece_atom::value, c); });
}

// Piece `c` of the weights in flight (from the link, or a peer), placed; the work waiting for
// them starts once they are whole.
void place_weights(agent_pointer self, Chunk& c, bool from_link) {
  auto& st = self->state;
  WeightsInFlight& in = st.incoming;
  if (!in.weights || int64_t(c.id) != in.version) return;
  const int64_t at = in.pieces.place(c.total, c.index, c.bytes.size());
  if (at < 0) return;  // not a piece of these weights, or one that came already
  std::memcpy(reinterpret_cast<char*>(in.weights->data()) + at, c.bytes.data(), c.bytes.size());
  in.last_piece_s = seconds_now();
  if (from_link && in.spread) forward_piece(self, c.index, at, c.bytes.size());
  if (!in.pieces.complete()) return;
  if (in.spread) self->send(st.link, have_atom::value, in.version);
  st.weights = std::move(in.weights);
  st.weights_version = in.version;
  in = WeightsInFlight{};
  compute(self);
}

// A peer's piece of weights newer than the spread in flight (its spread overtook this node's):
// kept, a version's worth at most, until that spread begins.
void keep_early_weights(agent_pointer self, Chunk& c) {
  auto& st = self->state;
  auto& early = st.early_weights;
  if (!early.empty() && early.front().id > c.id) return;
  if (!early.empty() && early.front().id < c.id) early.clear();
  uint64_t bytes = c.bytes.size();
  for (const Chunk& e : early) bytes += e.bytes.size();
  if (bytes > ParamLayout(st.run.model).total() * sizeof(float)) return;
  early.push_back(std::move(c));
}

void on_spread(agent_pointer self, NodeSpread& s) {
  auto& st = self->state;
  if (!st.local || !spread_problem(st.run, st.my_index, s).empty()) return;  // (work waits: lost)
  if (s.version == st.weights_version) return;
  WeightsInFlight in;
  in.version = s.version;
  in.pieces = spread_assembly(s);
  in.weights = std::make_shared<AlignedVector<float>>(s.weight_bytes / sizeof(float));
  in.spread = true;
  in.last_piece_s = seconds_now();
  in.plan = std::move(s);
  st.incoming = std::move(in);
  for (const PeerEndpoint& p : st.incoming.plan.peers)
    if (p.node != st.my_index) reach_peer(self, p);
  for (Chunk& c : std::exchange(st.early_weights, {})) place_weights(self, c, false);
  self->delayed_send(self, std::chrono::milliseconds(500), check_atom::value,
                     st.incoming.plan.version);
}

// A spread that stalled asks the link for the pieces still missing.
void check_spread(agent_pointer self, int64_t version) {
  auto& st = self->state;
  WeightsInFlight& in = st.incoming;
  if (!in.weights || !in.spread || in.version != version) return;
  if (seconds_now() - in.last_piece_s >= kSpreadStallS) {
    self->send(st.link, need_atom::value, NodeNeed{version, in.pieces.missing()});
    in.last_piece_s = seconds_now();
  }
  self->delayed_send(self, std::chrono::milliseconds(500), check_atom::value, version);
}

// ---------------------------------------------------------------------------------------------
// Handing over a kept sum: whole, or exchanged with the peers (each totals one slice).

void reduce_error(agent_pointer self, uint64_t request, const std::string& why) {
  NodeResult r;
  r.request = request;
  r.error = fmt::format("node {}: {}", self->state.opt.node_id, why);
  send_answer(self, std::move(r), nullptr, 0);
}

void fail_reduce(agent_pointer self, const std::string& why) {
  auto& st = self->state;
  if (!st.reduce.active) return;
  const uint64_t request = st.reduce.req.request;
  st.reduce = ReduceInFlight{};
  reduce_error(self, request, why);
}

void maybe_finish_reduce(agent_pointer self) {
  auto& st = self->state;
  ReduceInFlight& x = st.reduce;
  if (!x.active || x.missing > 0) return;
  NodeResult r;
  r.request = x.req.request;
  r.partial.grad = std::move(x.counts);
  const std::vector<int64_t> total = std::move(x.total);
  x = ReduceInFlight{};
  send_answer(self, std::move(r), total.data(), total.size());
}

// A piece of this node's slice from the peer in slot `from` (node `sender`), added once whole.
void place_sum_piece(agent_pointer self, int32_t from, int32_t sender, Chunk& c) {
  auto& st = self->state;
  ReduceInFlight& x = st.reduce;
  const size_t j = size_t(from);
  if (from < 0 || j >= x.req.peers.size() || from == x.req.me || x.req.peers[j].node != sender ||
      x.added[j])
    return;
  if (!x.sized[j]) x.pieces[j] = sum_assembly(x.slice.size(), c.total), x.sized[j] = true;
  const int64_t at = x.pieces[j].place(c.total, c.index, c.bytes.size());
  if (at < 0) return;
  x.last_piece_s = seconds_now();
  if (x.packed[j].empty()) x.packed[j].resize(x.pieces[j].bytes());
  std::memcpy(x.packed[j].data() + at, c.bytes.data(), c.bytes.size());
  if (!x.pieces[j].complete()) return;
  std::vector<int64_t> part;
  if (const auto bad = unpack_partial_sum(x.slice.size(), x.packed[j], part); !bad.empty())
    return fail_reduce(self, fmt::format("node {} sent a malformed piece: {}", sender, bad));
  uint64_t* a = reinterpret_cast<uint64_t*>(x.total.data());
  const uint64_t* b = reinterpret_cast<const uint64_t*>(part.data());
  for (size_t i = 0; i < part.size(); ++i) a[i] += b[i];  // two's complement: order-free
  x.added[j] = true;
  x.packed[j] = {};
  --x.missing;
  maybe_finish_reduce(self);
}

// A piece of a slice for an exchange not begun here yet: kept (bounded) until it begins.
void keep_early_sum(agent_pointer self, uint64_t epoch, int32_t from, int32_t sender, Chunk& c) {
  auto& st = self->state;
  const uint64_t bound = 2 * packed_sums_bound(ParamLayout(st.run.model).total());
  if (st.early_sum_bytes + c.bytes.size() > bound) return;
  st.early_sum_bytes += c.bytes.size();
  st.early_sums.push_back(EarlyPiece{epoch, from, sender, std::move(c)});
}

// Sends slice j of the kept sum to the peer in slot j, for every other slot.
void send_slices(agent_pointer self) {
  auto& st = self->state;
  const ReduceInFlight& x = st.reduce;
  const auto& sum = st.held.grad.sum;
  const int k = int(x.req.peers.size());
  for (int j = 0; j < k; ++j) {
    const SliceRange r = reduce_slice(st.run, k, j);
    if (j == x.req.me || r.size() == 0) continue;
    auto packed = std::make_shared<std::vector<char>>();
    pack_sums(sum.data() + r.begin, r.size(), *packed);
    auto chunks = Chunk::split(x.req.epoch, packed, packed->data(), packed->size());
    to_peer(self, x.req.peers[size_t(j)],
            [self, chunks, epoch = x.req.epoch, me = x.req.me](const peer_actor& p) {
              for (const Chunk& c : chunks) self->send(p, spiece_atom::value, epoch, me, c);
            });
  }
}

void on_reduce(agent_pointer self, NodeReduce& r) {
  auto& st = self->state;
  st.work_since = SteadyClock::now();
  st.reduce = ReduceInFlight{};
  if (const auto bad = reduce_problem(st.my_index, r); !bad.empty())
    return reduce_error(self, r.request, "a malformed request to hand over its sum: " + bad);
  if (st.held.key != r.hold_key || st.held.grad.shards != r.shards)
    return reduce_error(self, r.request, "it holds no such partial sum");
  const int k = int(r.peers.size());
  st.last_epoch = std::max(st.last_epoch, r.epoch);
  if (k == 1) {  // alone: the whole sum to the root
    NodeResult out;
    out.request = r.request;
    out.partial.grad = st.held.grad.without_sum();
    return send_answer(self, std::move(out), st.held.grad.sum.data(), st.held.grad.sum.size());
  }
  ReduceInFlight& x = st.reduce;
  x.active = true;
  x.req = std::move(r);
  x.slice = reduce_slice(st.run, k, x.req.me);
  x.counts = st.held.grad.without_sum();
  const auto& sum = st.held.grad.sum;
  x.total.assign(sum.begin() + std::ptrdiff_t(x.slice.begin),
                 sum.begin() + std::ptrdiff_t(x.slice.end));
  x.pieces.resize(size_t(k)), x.packed.resize(size_t(k));
  x.sized.assign(size_t(k), false), x.added.assign(size_t(k), x.slice.size() == 0);
  x.added[size_t(x.req.me)] = true;
  x.missing = int32_t(std::count(x.added.begin(), x.added.end(), false));
  x.last_piece_s = seconds_now();
  self->delayed_send(self, std::chrono::milliseconds(500), xcheck_atom::value, x.req.epoch);
  ++st.exchanges;
  const bool mute = st.opt.mute_in_exchange < 0 || st.exchanges == st.opt.mute_in_exchange;
  if (!mute) send_slices(self);                                     // (tests: a peer that is stuck)
  if (st.exchanges == st.opt.die_in_exchange) std::raise(SIGKILL);  // (tests: mid-exchange)
  std::vector<EarlyPiece> early = std::exchange(st.early_sums, {});
  st.early_sum_bytes = 0;
  for (EarlyPiece& e : early)
    if (e.epoch == x.req.epoch && st.reduce.active)
      place_sum_piece(self, e.from, e.sender, e.chunk);
  maybe_finish_reduce(self);
}

// An exchange that stalled fails, naming the peers whose pieces are missing.
void check_exchange(agent_pointer self, uint64_t epoch) {
  const ReduceInFlight& x = self->state.reduce;
  if (!x.active || x.req.epoch != epoch) return;
  if (seconds_now() - x.last_piece_s < kExchangeStallS) {
    self->delayed_send(self, std::chrono::milliseconds(500), xcheck_atom::value, epoch);
    return;
  }
  std::string from;
  for (size_t j = 0; j < x.req.peers.size(); ++j)
    if (!x.added[j]) from += fmt::format("{}{}", from.empty() ? "" : ", ", x.req.peers[j].node);
  fail_reduce(self, fmt::format("no piece of its slice came for {:g} s (missing from node {})",
                                kExchangeStallS, from));
}

void on_sum_piece(agent_pointer self, uint64_t epoch, int32_t from, Chunk& c) {
  auto& st = self->state;
  const int32_t sender = sending_peer(self);
  if (sender < 0) return;
  if (st.reduce.active && epoch == st.reduce.req.epoch)
    return place_sum_piece(self, from, sender, c);
  if (epoch > st.last_epoch) keep_early_sum(self, epoch, from, sender, c);
}

// A peer went away or could not be reached: what waited for it is dropped, and an exchange that
// still needs its piece ends with an error (the root then asks for whole sums).
void peer_lost(agent_pointer self, int32_t node, const std::string& why) {
  auto& st = self->state;
  st.waiting.erase(node);
  if (auto it = st.peers.find(node); it != st.peers.end()) {
    self->demonitor(it->second.address());
    st.peers.erase(it);
  }
  st.peer_dialers.erase(node);
  const ReduceInFlight& x = st.reduce;
  for (size_t j = 0; x.active && j < x.req.peers.size(); ++j)
    if (x.req.peers[j].node == node && !x.added[j])
      return fail_reduce(self, fmt::format("lost its peer node {} ({})", node, why));
}

// The statistics of the local spheres, for the root's spheres.json: every sphere of the subtree
// with what is known without asking, completed by the reports of the spheres that had work. The
// sphere protocol sends them to a collector (an untyped actor): one per request, which answers it
// once every report is in and then ends.
struct CollectorState {
  static inline const char* name = "node_stats";
  std::vector<SphereStats> all;
  int64_t outstanding = 1;
  caf::typed_response_promise<std::vector<SphereStats>> rp;
};

caf::behavior stats_collector(caf::stateful_actor<CollectorState>* self, NodeOptions opt) {
  const Topology topo(opt.spheres, opt.fanout);
  for (const SphereInfo& pos : topo.positions())
    self->state.all.push_back(SphereStats::placed(pos));
  return {
      [self](stats_atom, const coordinator_actor& local) -> caf::result<std::vector<SphereStats>> {
        self->state.rp = self->make_response_promise<std::vector<SphereStats>>();
        self->send(local, stats_atom::value, caf::actor(self), int64_t(0));
        return self->state.rp;
      },
      [self](stats_atom, SphereStats& s, int32_t asked) {
        auto& st = self->state;
        st.outstanding += asked - 1;
        if (s.id >= 0 && size_t(s.id) < st.all.size()) st.all[size_t(s.id)] = std::move(s);
        if (st.outstanding != 0) return;
        st.rp.deliver(std::move(st.all));
        self->quit();
      },
      caf::after(kStatsTimeout) >> [self] { self->quit(); },  // the request timed out by now
  };
}

caf::result<std::vector<SphereStats>> on_stats(agent_pointer self) {
  auto rp = self->make_response_promise<std::vector<SphereStats>>();
  auto collector = self->spawn(stats_collector, self->state.opt);
  self->request(collector, kStatsTimeout, stats_atom::value, self->state.local)
      .then([rp](std::vector<SphereStats>& all) mutable { rp.deliver(std::move(all)); },
            [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

// Publishes the agent for its peers (with a cluster key, on loopback behind a guard that wants
// the key, as the root's port is), then dials the root.
void open_peer_port(agent_pointer self) {
  auto& st = self->state;
  if (st.opt.peer_host.empty()) return dial(self);
  const bool guarded = !st.opt.key.empty();
  auto& sys = self->system();
  const std::string where = fmt::format("{}:{}", st.opt.peer_host, st.opt.peer_port);
  const auto refuse = [self, where](const std::string& why) {
    self->quit(make_node_error(node_exit::refused,
                               fmt::format("cannot listen for peers on {}: {}", where, why)));
  };
  self->request(cluster_dialer(sys), kPeerDialTimeout, caf::publish_atom::value,
                guarded ? uint16_t(0) : st.opt.peer_port,
                caf::actor_cast<caf::strong_actor_ptr>(self), sys.message_types<peer_actor>(),
                guarded ? std::string("127.0.0.1") : st.opt.peer_host, true)
      .then(
          [self, guarded, refuse](uint16_t bound) {
            auto& s = self->state;
            if (guarded) {
              try {
                s.peer_guard = std::make_unique<ClusterGuard>(
                    s.opt.peer_host, s.opt.peer_port, s.opt.key, bound,
                    [](const std::string& line) {
                      std::fprintf(stderr, "cllm node: %s\n", line.c_str());
                    });
              } catch (const std::exception& e) {
                return refuse(e.what());
              }
              bound = s.peer_guard->port();
            }
            s.peer_port = bound;
            dial(self);
          },
          [self, refuse](caf::error& err) { refuse(self->system().render(err)); });
}

void on_down(agent_pointer self, const caf::down_msg& dm) {
  auto& st = self->state;
  if (dm.source == st.local.address()) {  // the local tree gave up: a fresh one, and say so
    st.local = nullptr;
    const std::string json = std::exchange(st.run_json, {});
    prepare_subtree(self, json, st.run);
    if (st.has_work) fail_work(self, exit_reason_text(self->system(), dm.reason));
    return;
  }
  if (dm.source == st.link.address() || dm.source == st.gateway.address()) {
    if (st.leaving)  // the root ended the link of a node that said goodbye
      return self->quit(make_node_error(node_exit::left, "left the cluster, as asked"));
    return retry(self, "the connection to the root was lost");
  }
  std::vector<int32_t> gone;
  for (const auto& [node, handle] : st.peers)
    if (dm.source == handle.address()) gone.push_back(node);
  for (const int32_t node : gone) peer_lost(self, node, "its connection was lost");
}

agent_impl::behavior_type agent_behavior(agent_pointer self, NodeOptions opt) {
  self->state.opt = std::move(opt);
  self->set_default_handler(caf::drop);
  self->set_down_handler([self](caf::down_msg& dm) { on_down(self, dm); });
  open_peer_port(self);
  // The agent is published for its peers: what only its link or its own process may send is
  // checked by sender (a peer holds the key, but is no root and no local signal handler).
  const auto from_link = [self] { return sent_by(self, self->state.link); };
  return {
      [self](dial_atom) { dial(self); },
      [self, from_link](work_atom, NodeWork& w) {
        if (from_link()) on_work(self, w);
      },
      [self, from_link](chunk_atom, Chunk& c) {
        if (from_link()) place_weights(self, c, true);
      },
      [self, from_link](spread_atom, NodeSpread& s) {
        if (from_link()) on_spread(self, s);
      },
      [self, from_link](reduce_atom, NodeReduce& r) {
        if (from_link()) on_reduce(self, r);
      },
      [self](check_atom, int64_t version) {
        if (caf::actor_cast<caf::actor_addr>(self->current_sender()) == self->address())
          check_spread(self, version);
      },
      [self](late_atom) {
        if (caf::actor_cast<caf::actor_addr>(self->current_sender()) == self->address())
          if (auto answer = std::exchange(self->state.late_answer, {})) answer();
      },
      [self](xcheck_atom, uint64_t epoch) {
        if (caf::actor_cast<caf::actor_addr>(self->current_sender()) == self->address())
          check_exchange(self, epoch);
      },
      [self](peer_atom, int32_t node) {
        // A node of a lower index dialed this one (through the guard, or TLS). Its hello may
        // come before this node has learnt its own index (another connection): not compared.
        auto& st = self->state;
        if (node > 0 && node != st.my_index && self->current_sender())
          add_peer(self, node, caf::actor_cast<peer_actor>(self->current_sender()));
      },
      [self](wpiece_atom, Chunk& c) {
        auto& st = self->state;
        if (sending_peer(self) < 0) return;
        if (st.incoming.spread && int64_t(c.id) == st.incoming.version)
          return place_weights(self, c, false);
        if (int64_t(c.id) > std::max(st.incoming.version, st.weights_version))
          keep_early_weights(self, c);
      },
      [self](spiece_atom, uint64_t epoch, int32_t from, Chunk& c) {
        on_sum_piece(self, epoch, from, c);
      },
      [self, from_link](shutdown_atom) -> caf::result<bool> {
        if (!from_link()) return caf::make_error(caf::sec::unexpected_message);
        // Answer first, then end (the root waits for the answer before it goes).
        self->send(self, shutdown_atom::value, true);
        return true;
      },
      [self](shutdown_atom, bool) {
        if (caf::actor_cast<caf::actor_addr>(self->current_sender()) != self->address()) return;
        self->quit(make_node_error(node_exit::done, "the root ended the run"));
      },
      [self](leave_atom) {
        auto& st = self->state;
        const auto& from = self->current_sender();
        if (!from || from->node() != self->node()) return;  // only this process asks
        st.leaving = true;
        if (st.has_work) return;  // after this step
        if (st.link) self->send(st.link, leave_atom::value);
        // A node that keeps a sum for the root waits for the root to end its link.
        if (!st.link || st.held.key == 0)
          self->quit(make_node_error(node_exit::left, "left the cluster, as asked"));
      },
      [self](stats_atom) {
        return on_stats(self);  // (statistics only: harmless from a peer)
      },
  };
}

}  // namespace

agent_actor spawn_node_agent(caf::actor_system& sys, NodeOptions opt) {
  return sys.spawn(agent_behavior, std::move(opt));
}

void request_leave(caf::scoped_actor& self, const agent_actor& agent) {
  self->send(agent, leave_atom::value);
}

}  // namespace cllm
