#include "actors/node_agent.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <caf/io/all.hpp>

#include "actors/cluster_root.hpp"
#include "actors/coordinator.hpp"
#include "messages/cluster.hpp"
#include "messages/cluster_checks.hpp"
#include "src/clock.hpp"
#include "src/cluster_auth.hpp"
#include "src/fingerprint.hpp"
#include "src/hmac.hpp"
#include "src/process_usage.hpp"
#include "src/sum_pack.hpp"

namespace cllm {

namespace {

using dial_atom = caf::atom_constant<caf::atom("dial")>;
constexpr auto kHandshakeTimeout = std::chrono::seconds(30);
constexpr auto kStatsTimeout = std::chrono::seconds(10);

// The agent's own messages on top of its interface: dial (again), and end after answering the
// root's shutdown.
using agent_impl =
    agent_actor::extend<caf::reacts_to<dial_atom>, caf::reacts_to<shutdown_atom, bool>>;

// Weights arriving in chunks for one version, straight into the buffer the spheres will read.
struct WeightsInFlight {
  int64_t version = -1;
  PayloadAssembly pieces;
  std::shared_ptr<AlignedVector<float>> weights;
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
};

using agent_pointer = agent_impl::stateful_pointer<AgentState>;

void dial(agent_pointer self);

// ---------------------------------------------------------------------------------------------
// Joining

// The root is gone or never answered: dial again after a pause, until the reconnect timeout.
void retry(agent_pointer self, const std::string& why) {
  auto& st = self->state;
  if (st.gateway) self->demonitor(st.gateway.address());
  if (st.link) self->demonitor(st.link.address());
  st.gateway = nullptr, st.link = nullptr;
  st.has_work = st.computing = false;
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
// Serving

void send_result(agent_pointer self, NodeResult r, std::vector<int64_t> sum) {
  auto& st = self->state;
  auto owner = std::make_shared<std::vector<char>>();
  pack_sums(sum.data(), sum.size(), *owner);  // lossless: the root unpacks the same integers
  // Pieces of the packed sum itself: the serializer copies straight from it.
  auto chunks = Chunk::split(r.request, owner, owner->data(), owner->size());
  r.sum_chunks = int32_t(chunks.size());
  r.sum_bytes = owner->size();
  r.node_ms = ms_since(st.work_since);
  r.cpu_s = process_cpu_s(), r.rss_mb = current_rss_mb();
  for (auto& c : chunks) self->send(st.link, chunk_atom::value, std::move(c));
  self->send(st.link, result_atom::value, std::move(r));
  st.has_work = st.computing = false;
  if (st.leaving) {
    self->send(st.link, leave_atom::value);
    self->quit(make_node_error(node_exit::left, "left the cluster after its step, as asked"));
  }
}

void fail_work(agent_pointer self, const std::string& why) {
  NodeResult r;
  r.request = self->state.work.request;
  r.error = fmt::format("node {}: {}", self->state.opt.node_id, why);
  send_result(self, std::move(r), {});
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
            NodeResult r;
            r.request = self->state.work.request;
            std::vector<int64_t> sum = std::move(p.grad.sum);
            r.partial = std::move(p);
            send_result(self, std::move(r), std::move(sum));
          },
          [self](caf::error& err) { fail_work(self, exit_reason_text(self->system(), err)); });
}

void on_work(agent_pointer self, NodeWork& w) {
  auto& st = self->state;
  st.work_since = SteadyClock::now();
  st.work = std::move(w);
  st.has_work = true, st.computing = false;
  // Checked before anything of it is used.
  if (const auto bad = work_problem(st.run, st.weights_version, st.work); !bad.empty())
    return fail_work(self, bad);
  if (st.work.weights_version != st.weights_version) {
    st.incoming = WeightsInFlight{};
    st.incoming.version = st.work.weights_version;
    st.incoming.pieces = weights_assembly(st.work);
    st.incoming.weights =
        std::make_shared<AlignedVector<float>>(st.work.weight_bytes / sizeof(float));
  }
  compute(self);
}

void on_weights_chunk(agent_pointer self, Chunk& c) {
  auto& st = self->state;
  WeightsInFlight& in = st.incoming;
  if (!in.weights || int64_t(c.id) != in.version) return;
  const int64_t at = in.pieces.place(c.total, c.index, c.bytes.size());
  if (at < 0) return;  // not a piece of these weights, or one that came already
  std::memcpy(reinterpret_cast<char*>(in.weights->data()) + at, c.bytes.data(), c.bytes.size());
  if (!in.pieces.complete()) return;
  st.weights = std::move(in.weights);
  st.weights_version = in.version;
  in = WeightsInFlight{};
  compute(self);
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

agent_impl::behavior_type agent_behavior(agent_pointer self, NodeOptions opt) {
  self->state.opt = std::move(opt);
  self->set_default_handler(caf::drop);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source == st.local.address()) {  // the local tree gave up: a fresh one, and say so
      st.local = nullptr;
      const std::string json = std::exchange(st.run_json, {});
      prepare_subtree(self, json, st.run);
      if (st.has_work) fail_work(self, exit_reason_text(self->system(), dm.reason));
      return;
    }
    if (dm.source == st.link.address() || dm.source == st.gateway.address())
      retry(self, "the connection to the root was lost");
  });
  self->send(self, dial_atom::value);
  return {
      [self](dial_atom) { dial(self); },
      [self](work_atom, NodeWork& w) {
        if (sent_by(self, self->state.link)) on_work(self, w);
      },
      [self](chunk_atom, Chunk& c) {
        if (sent_by(self, self->state.link)) on_weights_chunk(self, c);
      },
      [self](shutdown_atom) -> caf::result<bool> {
        if (!sent_by(self, self->state.link)) return caf::make_error(caf::sec::unexpected_message);
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
        st.leaving = true;
        if (st.has_work) return;  // after this step
        if (st.link) self->send(st.link, leave_atom::value);
        self->quit(make_node_error(node_exit::left, "left the cluster, as asked"));
      },
      [self](stats_atom) { return on_stats(self); },
  };
}

}  // namespace

agent_actor spawn_node_agent(caf::actor_system& sys, NodeOptions opt) {
  return sys.spawn(agent_behavior, std::move(opt));
}

void request_leave(const agent_actor& agent) {
  caf::anon_send(agent, leave_atom::value);
}

}  // namespace cllm
