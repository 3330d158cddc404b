#include "actors/coordinator.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <string>

#include <fmt/format.h>

#include "actors/owner.hpp"
#include "actors/supervisor.hpp"
#include "messages/cluster_checks.hpp"
#include "src/clock.hpp"

namespace cllm {

namespace {

// Exchanges failed one after the other before the nodes go back to the star (CoordinatorState).
constexpr int kMeshGiveUp = 3;

// Internal: a step's shards found no member, and no node joined in time.
using orphan_atom = caf::atom_constant<caf::atom("orphans")>;
using coordinator_impl =
    coordinator_actor::extend<caf::reacts_to<orphan_atom, int64_t>,
                              caf::replies_to<apply_atom, SliceBodyRef>::with<bool>>;

// A member of a step: the local subtree under sphere 0, or a remote node (through its link).
struct Member : ChildSlot {
  std::string name;   // "local", or the node's id and host
  link_actor link;    // the same actor as `handle` for a node (its end of the run); null if local
  int32_t node = -1;  // the node's index; -1 for the local subtree
  int capacity = 1;   // its share of the shards (threads) until its pace is measured
  double pace = 0;    // shards per second from dispatch to answer, smoothed (0: not yet)
  SteadyClock::time_point sent_at;  // of the work in flight
  int height = 0;                   // levels below its top sphere, for its deadline
  int spheres = 0;
  bool leaving = false;  // a node that said goodbye: no new work after this step
  // The step in flight.
  std::vector<size_t> in_flight;          // positions in the step's shard set
  std::deque<std::vector<size_t>> queue;  // positions dealt to it, not yet sent
  // A node in the exchange: where its peers reach it, the weights version spread to it, and the
  // sums it keeps for the round (under `hold_key`; 0: it sends them with its answers).
  PeerEndpoint peer;
  int64_t weights_version = -1;
  uint64_t hold_key = 0;
  std::vector<size_t> held;  // positions whose sums it keeps ...
  ExactGrad held_counts;     // ... and their loss, tokens, shards, maxima, flags
  bool reducing = false;     // handing them over: new work waits (it would change the sum)

  bool local() const { return node < 0; }
  bool exchanges() const { return !local() && peer.port != 0 && !leaving; }
};

// Nodes handing over their kept sums together: each totals one slice of the sum of all (the
// exchange), or, alone, its whole sum.
struct Reduction {
  std::vector<caf::actor_addr> members;  // in slot order
  std::vector<ExactGrad> slices;
  size_t left = 0;
  bool failed = false;
};

struct CoordinatorState {
  static inline const char* name = "coordinator";

  ~CoordinatorState() {  // see ~SphereState: no recursive teardown
    for (const auto& m : members)
      if (m.handle) caf::anon_send_exit(m.handle, caf::exit_reason::kill);
    for (const auto& o : owners)
      if (o) caf::anon_send_exit(o, caf::exit_reason::kill);
  }

  CoordinatorSetup setup;
  std::vector<Member> members;
  Supervision sv;
  std::map<int, std::shared_ptr<const ShardPlan>> plans;  // local placement per shard count
  // The step in flight (the supervision's part is `sv`).
  int64_t steps_begun = 0;
  WeightsRef weights;
  ShardSetRef set;
  int64_t deadline_ms = 0;
  size_t remaining = 0;         // shards not yet summed
  std::vector<size_t> orphans;  // positions no member could take
  // The owners of the slices, and the round (attempt of a step) their sums belong to.
  std::vector<owner_actor> owners;
  std::vector<std::shared_ptr<const OwnerSetup>> owner_setups;
  uint64_t round = 0;
  // An owner failed in this round: it runs again once every member answered.
  bool round_lost = false;
  bool checking = false;        // asking the owners whether every slice holds every shard ...
  bool owners_checked = false;  // ... and asked, in this round
  OwnerSetRef owner_set;
  size_t owner_merges = 0;  // nodes' partial sums not yet merged into every owner
  // The exchange between nodes in this round: whether nodes keep their sums, whether an exchange
  // failed (then each hands over its whole sum), and the reduce requests not yet answered.
  bool holding = false, mesh_failed = false;
  // Exchanges that failed one after the other; at kMeshGiveUp the nodes send their whole sums and
  // get whole weights (the star) until a node joins (peers that cannot reach each other, say a
  // firewall between them, must not cost every step a stall).
  int exchanges_failed_in_row = 0;
  bool mesh_off = false;
  size_t reducing = 0;
  uint64_t hold_keys = 0, epochs = 0;
};

using coordinator_pointer = coordinator_impl::stateful_pointer<CoordinatorState>;

void record(CoordinatorState& st, int32_t kind, int32_t who, std::string what) {
  FaultEvent e;
  e.kind = kind, e.sphere = who, e.step = st.sv.active ? st.sv.work.step : -1;
  e.reason = std::move(what);
  st.sv.counts().events.push_back(std::move(e));
}

AssignmentRef assignment_for(CoordinatorState& st, const Member& m,
                             const std::vector<size_t>& positions) {
  auto a = std::make_shared<Assignment>();
  a->set = st.set->subset(positions, shard_tokens(st.setup.run));
  if (m.local()) {
    auto& plan = st.plans[int(positions.size())];
    if (!plan)
      plan = std::make_shared<const ShardPlan>(st.setup.local->topology, int(positions.size()),
                                               st.setup.local->placement);
    a->plan = plan;
    a->owners = st.owner_set;
  }
  return a;
}

Membership membership(const CoordinatorState& st) {
  Membership m;
  for (const Member& x : st.members) {
    m.nodes += x.local() ? 0 : 1;
    m.spheres += x.spheres;
  }
  return m;
}

// A node that said goodbye and has no work left goes (its shards were already dealt elsewhere).
void remove_leaver(coordinator_pointer self, size_t i) {
  auto& st = self->state;
  record(st, FaultEvent::node_left, st.members[i].node, st.members[i].name);
  ++st.sv.counts().nodes_left;
  self->send_exit(st.members[i].handle, caf::exit_reason::user_shutdown);
  st.members.erase(st.members.begin() + std::ptrdiff_t(i));
}

void start_round(coordinator_pointer self);
void check_owners(coordinator_pointer self);
bool start_reduce(coordinator_pointer self);

void maybe_finish(coordinator_pointer self) {
  auto& st = self->state;
  if (!st.sv.active || st.remaining > 0 || st.owner_merges > 0 || st.checking || st.reducing > 0)
    return;
  if (st.round_lost) return start_round(self);  // every member answered: no work of two rounds
  if (start_reduce(self)) return;               // nodes keep sums: they hand them over first
  if (!st.owners.empty() && !std::exchange(st.owners_checked, true)) return check_owners(self);
  st.sv.acc.members = membership(st);
  st.weights.reset();
  st.set.reset();
  st.sv.answer();
  // Nodes that said goodbye leave now, between steps.
  for (size_t i = st.members.size(); i-- > 0;)
    if (st.members[i].leaving) remove_leaver(self, i);
}

void on_member_failure(coordinator_pointer self, size_t i, ChildEnd end);

void on_reply(coordinator_pointer self, const caf::actor_addr& addr, Partial& p);

// The member behind `who`, or members.size(). (Indices shift as nodes come and go; replies and
// exits name their member by address.)
size_t find_member(const CoordinatorState& st, const caf::actor_addr& who) {
  for (size_t i = 0; i < st.members.size(); ++i)
    if (st.members[i].handle.address() == who) return i;
  return st.members.size();
}

// Sends the member its next dealt shards, if it is free and has any.
void dispatch(coordinator_pointer self, size_t i) {
  auto& st = self->state;
  Member& m = st.members[i];
  if (m.busy || m.queue.empty() || m.reducing) return;
  m.in_flight = std::move(m.queue.front());
  m.queue.pop_front();
  m.sent_at = SteadyClock::now();
  StepCtl ctl;
  ctl.deadline_ms = st.deadline_ms;
  ctl.hold_key = m.hold_key;
  send_work(
      self, st.sv, m, m.height + (m.local() ? 0 : 1),  // a node's subtree sits below its link
      st.weights, assignment_for(st, m, m.in_flight), ctl, !m.local(),
      [self](const caf::actor_addr& who) -> ChildSlot* {
        auto& s = self->state;
        const size_t k = find_member(s, who);
        return k < s.members.size() ? &s.members[k] : nullptr;
      },
      [self](const caf::actor_addr& who, Partial& p) { on_reply(self, who, p); },
      [self](const caf::actor_addr& who, ChildEnd end) {
        on_member_failure(self, find_member(self->state, who), std::move(end));
      });
}

// Every member has answered: before the step is answered, every owner must hold every shard of
// the round (a dead owner's errors may have reached the spheres, which count them as answers,
// before its exit message reached us). Any owner short of that, or gone, loses the round.
void check_owners(coordinator_pointer self) {
  auto& st = self->state;
  st.checking = true;
  auto left = std::make_shared<size_t>(st.owners.size());
  const uint64_t round = st.round;
  const int32_t shards = int32_t(st.set->shards.size());
  const auto one = [self, left, round](bool whole) {
    auto& s = self->state;
    if (s.round != round || !s.sv.active) return;
    if (!whole) s.round_lost = true;
    if (--*left > 0) return;
    s.checking = false;
    maybe_finish(self);
  };
  for (const owner_actor& o : st.owners) {
    if (!o) {
      one(false);
      continue;
    }
    self->request(o, caf::infinite, held_atom::value, round)
        .then([=](int32_t held) { one(held == shards); }, [=](caf::error&) { one(false); });
  }
}

// A node's whole partial sum of the shards at `positions`: every owner adds its slice of it.
void merge_into_owners(coordinator_pointer self, const std::vector<size_t>& positions,
                       ExactGrad& grad) {
  auto& st = self->state;
  std::vector<int32_t> shards;
  for (size_t p : positions) shards.push_back(st.set->shards[p]);
  const ExactGradRef partial = std::make_shared<const ExactGrad>(std::move(grad));
  grad = ExactGrad{};
  const uint64_t round = st.round;
  for (const owner_actor& o : st.owners) {
    ++st.owner_merges;
    const auto done = [self, round] {
      auto& s = self->state;
      if (s.round != round || !s.sv.active) return;
      --s.owner_merges;
      maybe_finish(self);
    };
    self->request(o, caf::infinite, merge_atom::value, round, st.sv.work, shards, partial)
        .then([=](double) { done(); },
              [=](caf::error&) { done(); });  // a dead owner: the round runs again
  }
}

void on_reply(coordinator_pointer self, const caf::actor_addr& addr, Partial& p) {
  auto& s = self->state;
  const size_t i = find_member(s, addr);
  Member& m = s.members[i];
  if (!m.in_flight.empty()) {  // how fast its shards come back, latency included
    const double took_s = ms_since(m.sent_at) / 1000;
    const double sample = double(m.in_flight.size()) / std::max(took_s, 1e-6);
    m.pace = m.pace > 0 ? 0.5 * m.pace + 0.5 * sample : sample;
  }
  // With owners (the root), a node's whole partial sum goes to them; without (a node's own
  // coordinator), partial sums are merged here, whole, as they go up to the root. A node that
  // keeps its sum for the exchange answers with its counts only.
  if (m.hold_key != 0 && p.grad.shards > 0 && p.grad.sum.empty()) {
    m.held.insert(m.held.end(), m.in_flight.begin(), m.in_flight.end());
    m.held_counts.merge(p.grad);
    p.grad = ExactGrad{};
  } else if (p.grad.shards > 0 && !s.owners.empty()) {
    merge_into_owners(self, m.in_flight, p.grad);
  }
  s.remaining -= m.in_flight.size();
  m.in_flight.clear();
  s.sv.acc.merge(p);  // timings, faults (and the sum, where there are no owners)
  dispatch(self, i);
  maybe_finish(self);
}

// Positions with no member to take them wait for a node to join, for a while.
void deal_again(coordinator_pointer self, std::vector<size_t> positions) {
  auto& st = self->state;
  if (positions.empty()) return;
  std::vector<int> capacity;
  std::vector<double> pace;
  for (const Member& m : st.members)
    capacity.push_back(m.leaving ? 0 : m.capacity), pace.push_back(m.pace);
  if (std::all_of(capacity.begin(), capacity.end(), [](int c) { return c == 0; })) {
    if (st.orphans.empty())
      self->delayed_send(self, std::chrono::milliseconds(int64_t(st.setup.orphan_timeout_s * 1000)),
                         orphan_atom::value, st.steps_begun);
    st.orphans.insert(st.orphans.end(), positions.begin(), positions.end());
    return;
  }
  for (int& c : capacity) c = std::max(c, 0);
  const auto dealt = deal_shards(positions, deal_weights(capacity, pace));
  for (size_t m = 0; m < st.members.size(); ++m) {
    if (dealt[m].empty()) continue;
    st.members[m].queue.push_back(dealt[m]);
    dispatch(self, m);
  }
}

void stop_run(coordinator_pointer self, const FaultCounts& counted, std::string cause) {
  auto& st = self->state;
  give_up(self, st.sv, GiveUp{std::move(cause), counted});
}

// A node is gone: its shards go to the others, within the same step.
void lose_node(coordinator_pointer self, size_t i, const std::string& reason) {
  auto& st = self->state;
  Member m = std::move(st.members[i]);
  st.members.erase(st.members.begin() + std::ptrdiff_t(i));
  self->send_exit(m.handle, caf::exit_reason::kill);
  std::vector<size_t> positions = m.in_flight;
  for (auto& q : m.queue) positions.insert(positions.end(), q.begin(), q.end());
  // The sums it kept for the exchange are gone with it: those shards are computed again.
  positions.insert(positions.end(), m.held.begin(), m.held.end());
  if (st.sv.active) st.remaining += m.held.size();
  FaultCounts& fc = st.sv.counts();
  ++fc.nodes_lost;
  fc.shards_redispatched += int64_t(positions.size());
  record(st, FaultEvent::node_lost, m.node,
         fmt::format("{}: {}; its {} shards went to the others", m.name, reason, positions.size()));
  if (st.sv.active) deal_again(self, std::move(positions));
  maybe_finish(self);
}

// A member failed. A node is lost; the local subtree is restarted (sphere 0, with the root's
// restart budget) and given its shards again.
void on_member_failure(coordinator_pointer self, size_t i, ChildEnd end) {
  auto& st = self->state;
  Member& m = st.members[i];
  if (!m.local()) return lose_node(self, i, end.reason);
  const auto& p = st.setup.local->policy;
  restart_or_give_up(
      self, st.sv, m, 0, std::move(end),
      [self] { return spawn_sphere(self, self->state.setup.local, 0); },
      [self, i] {  // the same shards again, as a fresh delivery
        Member& again = self->state.members[i];
        again.queue.push_front(std::move(again.in_flight));
        dispatch(self, i);
      },
      [&p](const FaultEvent& last) {
        return fmt::format(
            "sphere 0 failed more than {} times within {:g} s or one step (the root's restart "
            "budget, --root-max-restarts/--root-restart-window); {}",
            p.root_max_restarts, p.root_window_s, last_failure_text(last));
      });
}

// ---------------------------------------------------------------------------------------------
// The exchange between nodes (no centre in the step): the root's link carries one packed sum and
// one copy of the weights per step, whatever the number of nodes; each node's link carries about
// twice that. Integer sums commute, so who adds which piece changes no bit.

// A step's weights go to the nodes that exchange as pieces: each gets its share from here and
// forwards it to the others (nodes that join later, or alone, get them whole with their work).
void spread_weights(coordinator_pointer self, int64_t version) {
  auto& st = self->state;
  if (!st.setup.mesh || st.mesh_off) return;
  std::vector<size_t> to;
  for (size_t i = 0; i < st.members.size(); ++i)
    if (st.members[i].exchanges() && st.members[i].weights_version != version) to.push_back(i);
  if (to.size() < 2) return;
  NodeSpread s;
  s.version = version;
  s.weight_bytes = st.weights->size() * sizeof(float);
  s.piece_bytes = spread_piece_bytes(s.weight_bytes, int(to.size()));
  for (size_t i : to) s.peers.push_back(st.members[i].peer);
  for (size_t j = 0; j < to.size(); ++j) {
    Member& m = st.members[to[j]];
    s.me = int32_t(j);
    self->send(m.link, spread_atom::value, s, st.weights);
    m.weights_version = version;
  }
}

void reduce_group(coordinator_pointer self, const std::vector<size_t>& which);

// An exchange failed (a node lost, a peer unreachable, a malformed piece): every member of it
// still here hands over its whole sum instead (a new request supersedes the old one).
void fail_reduction(coordinator_pointer self, Reduction& r, const std::string& why) {
  auto& st = self->state;
  if (std::exchange(r.failed, true)) return;
  if (r.members.size() == 1) {
    const size_t i = find_member(st, r.members[0]);
    if (i < st.members.size()) lose_node(self, i, "it could not hand over its sums: " + why);
    return;
  }
  st.mesh_failed = true;
  record(st, FaultEvent::exchange_failed, -1,
         fmt::format("the exchange between {} nodes failed ({}); each sent its whole sum",
                     r.members.size(), why));
  if (++st.exchanges_failed_in_row == kMeshGiveUp && !st.mesh_off) {
    st.mesh_off = true;
    record(st, FaultEvent::exchange_failed, -1,
           fmt::format("{} exchanges failed in a row: the nodes send their whole sums to the root "
                       "and get whole weights from it until a node joins",
                       kMeshGiveUp));
  }
  for (const caf::actor_addr& a : r.members)
    if (const size_t i = find_member(st, a); i < st.members.size()) reduce_group(self, {i});
}

// Every slice is in: the sum of the group's kept sums, merged into the owners like a node's whole
// sum. Not when a member was lost meanwhile: its shards are being computed again elsewhere.
void finish_reduction(coordinator_pointer self, Reduction& r) {
  auto& st = self->state;
  std::vector<size_t> idx;
  for (const caf::actor_addr& a : r.members) {
    idx.push_back(find_member(st, a));
    if (idx.back() == st.members.size()) return fail_reduction(self, r, "a node was lost");
  }
  ExactGrad whole;
  std::vector<size_t> positions;
  for (size_t i : idx) {
    Member& m = st.members[i];
    whole.merge(m.held_counts);
    positions.insert(positions.end(), m.held.begin(), m.held.end());
    m.held.clear(), m.held_counts = ExactGrad{};
    m.hold_key = ++st.hold_keys;  // work dealt to it later in this round is kept anew
    m.reducing = false;
  }
  if (r.members.size() > 1) st.exchanges_failed_in_row = 0;
  whole.begin = 0;
  for (ExactGrad& slice : r.slices)
    whole.sum.insert(whole.sum.end(), slice.sum.begin(), slice.sum.end());
  merge_into_owners(self, positions, whole);
  for (size_t i : idx) dispatch(self, i);  // work dealt to it meanwhile (a lost node's shards)
}

void on_slice(coordinator_pointer self, const std::shared_ptr<Reduction>& r, size_t j,
              uint64_t round, Partial* p, const std::string& why) {
  auto& st = self->state;
  if (round != st.round || !st.sv.active) return;  // an older round's (`reducing` began afresh)
  --st.reducing;
  if (r->failed) return maybe_finish(self);
  if (!p) {
    fail_reduction(self, *r, why);
    return maybe_finish(self);
  }
  const SliceRange want = reduce_slice(st.setup.run, int(r->members.size()), int(j));
  if (p->grad.begin != want.begin || p->grad.sum.size() != want.size()) {
    fail_reduction(self, *r, "a slice of the wrong range");
    return maybe_finish(self);
  }
  r->slices[j] = std::move(p->grad);
  p->grad = ExactGrad{};
  st.sv.acc.merge(*p);  // its timings and bytes
  if (--r->left == 0) finish_reduction(self, *r);
  maybe_finish(self);
}

int64_t reduce_timeout_ms(const CoordinatorState& st) {
  // Nodes that die are noticed by their connection (at once, or by the heartbeat); this bounds
  // an exchange that hangs otherwise. Generous: a slice of a large model on a slow link.
  return std::max<int64_t>(60000, 8 * st.deadline_ms);
}

void reduce_group(coordinator_pointer self, const std::vector<size_t>& which) {
  auto& st = self->state;
  auto r = std::make_shared<Reduction>();
  const uint64_t epoch = ++st.epochs;
  std::vector<PeerEndpoint> peers;
  for (size_t i : which) {
    peers.push_back(st.members[i].peer);
    r->members.push_back(st.members[i].handle.address());
  }
  r->slices.resize(which.size());
  r->left = which.size();
  for (size_t j = 0; j < which.size(); ++j) {
    Member& m = st.members[which[j]];
    m.reducing = true;
    NodeReduce req;
    req.hold_key = m.hold_key, req.epoch = epoch, req.shards = int32_t(m.held.size());
    req.peers = peers, req.me = int32_t(j);
    ++st.reducing;
    const uint64_t round = st.round;
    self->request(m.link, std::chrono::milliseconds(reduce_timeout_ms(st)), reduce_atom::value,
                  std::move(req))
        .then([self, r, j, round](Partial& p) { on_slice(self, r, j, round, &p, {}); },
              [self, r, j, round](caf::error& e) {
                on_slice(self, r, j, round, nullptr, exit_reason_text(self->system(), e));
              });
  }
}

// Every shard is computed: nodes that kept their sums hand them over, together (each totals
// one slice of the sum of all) or, after a failed exchange or where a node cannot take part in
// one, each its whole sum. False when no node keeps any.
bool start_reduce(coordinator_pointer self) {
  auto& st = self->state;
  std::vector<size_t> mesh, alone;
  for (size_t i = 0; i < st.members.size(); ++i) {
    const Member& m = st.members[i];
    if (m.held.empty()) continue;
    (m.peer.port != 0 && !st.mesh_failed ? mesh : alone).push_back(i);
  }
  if (mesh.size() == 1) alone.push_back(mesh[0]), mesh.clear();
  if (mesh.empty() && alone.empty()) return false;
  if (!mesh.empty()) reduce_group(self, mesh);
  for (size_t i : alone) reduce_group(self, {i});
  return true;
}

caf::result<Partial> on_step(coordinator_pointer self, const StepWork& work,
                             const WeightsRef& weights, const ShardSetRef& set,
                             const StepCtl& ctl) {
  auto& st = self->state;
  st.sv.begin(self, work);
  ++st.steps_begun;
  st.weights = weights, st.set = set, st.deadline_ms = ctl.deadline_ms;
  auto rp = st.sv.rp;
  spread_weights(self, work.step);
  start_round(self);
  return rp;
}

// A round of the step in flight: every shard dealt to the members, the owners' slices started
// afresh. Again after an owner failed (the shards' sums are computed a second time; int64 sums
// make that the same bits).
void start_round(coordinator_pointer self) {
  auto& st = self->state;
  st.round_lost = false;
  st.owners_checked = st.checking = false;
  st.remaining = st.set->shards.size();
  st.orphans.clear();
  ++st.round;
  st.owner_merges = 0;
  st.owner_set = nullptr;
  // Nodes keep their sums for an exchange when at least two can take part in one.
  st.holding = st.setup.mesh && !st.mesh_off &&
               std::count_if(st.members.begin(), st.members.end(),
                             [](const Member& m) { return m.exchanges(); }) >= 2;
  st.mesh_failed = false;
  st.reducing = 0;
  for (Member& m : st.members) {
    m.held.clear(), m.held_counts = ExactGrad{}, m.reducing = false;
    m.hold_key = st.holding && m.exchanges() ? ++st.hold_keys : 0;
  }
  if (!st.owners.empty()) {
    auto owner_set = std::make_shared<OwnerSet>();
    owner_set->round = st.round;
    owner_set->owners = st.owners;
    st.owner_set = std::move(owner_set);
  }
  for (Member& m : st.members) m.busy = false, m.resends = 0, m.in_flight.clear(), m.queue.clear();
  std::vector<size_t> positions(st.set->shards.size());
  for (size_t p = 0; p < positions.size(); ++p) positions[p] = p;
  deal_again(self, std::move(positions));
  maybe_finish(self);
}

// A node passed the gateway: from now on it takes a share of the shards (of the current step
// too, if shards of it wait for a member).
void on_join(coordinator_pointer self, link_actor link, const JoinedNode& node) {
  auto& st = self->state;
  Member m;
  m.name = fmt::format("node {} ({})", node.id, node.host);
  m.handle = link, m.link = std::move(link);
  m.node = node.index;
  m.capacity = std::max(1, node.threads);
  m.height = node.height;
  m.spheres = node.spheres;
  m.peer = node.peer;
  m.hold_key = st.holding && m.exchanges() ? ++st.hold_keys : 0;
  st.mesh_off = false, st.exchanges_failed_in_row = 0;  // (the next round tries the mesh again)
  self->monitor(m.handle);
  st.members.push_back(std::move(m));
  ++st.sv.counts().nodes_joined;
  record(st, FaultEvent::node_joined, node.index, st.members.back().name);
  if (st.sv.active && !st.orphans.empty()) deal_again(self, std::exchange(st.orphans, {}));
}

void on_leave(coordinator_pointer self, const caf::actor_addr& link) {
  auto& st = self->state;
  for (size_t i = 0; i < st.members.size(); ++i) {
    if (st.members[i].handle.address() != link) continue;
    st.members[i].leaving = true;
    // Shards dealt to it but not yet sent go to the others; what it is computing it finishes.
    if (st.sv.active) {
      std::vector<size_t> queued;
      for (auto& q : st.members[i].queue) queued.insert(queued.end(), q.begin(), q.end());
      st.members[i].queue.clear();
      deal_again(self, std::move(queued));
    }
    if (!st.sv.active) maybe_finish(self);  // between steps it leaves at once
    return;
  }
}

// body(k) on every owner k at once. An owner that cannot take it (it died) has its slice's work
// done here: body never throws, so a slice is either done by its owner or not begun.
caf::result<bool> run_slices(coordinator_pointer self, const SliceBodyRef& body) {
  auto& st = self->state;
  struct Pending {
    size_t left;
    caf::typed_response_promise<bool> rp;
  };
  auto p =
      std::make_shared<Pending>(Pending{st.owners.size(), self->make_response_promise<bool>()});
  auto rp = p->rp;
  if (p->left == 0) {
    rp.deliver(true);
    return rp;
  }
  const auto one_done = [p] {
    if (--p->left == 0) p->rp.deliver(true);
  };
  for (size_t k = 0; k < st.owners.size(); ++k) {
    if (!st.owners[k]) {
      (*body)(int(k));
      one_done();
      continue;
    }
    self->request(st.owners[k], caf::infinite, apply_atom::value, body)
        .then([=](bool) { one_done(); },
              [=](caf::error&) {
                (*body)(int(k));
                one_done();
              });
  }
  return rp;
}

// The run is over: every node hears it (and gets a moment to), so none is left dialing.
caf::result<bool> end_run(coordinator_pointer self) {
  auto& st = self->state;
  auto rp = self->make_response_promise<bool>();
  auto left = std::make_shared<size_t>(0);
  for (const Member& m : st.members)
    if (!m.local()) ++*left;
  if (*left == 0) {
    rp.deliver(true);
    return rp;
  }
  for (const Member& m : st.members) {
    if (m.local()) continue;
    self->request(m.link, std::chrono::seconds(3), shutdown_atom::value)
        .then(
            [=](bool) mutable {
              if (--*left == 0) rp.deliver(true);
            },
            [=](caf::error&) mutable {
              if (--*left == 0) rp.deliver(true);
            });
  }
  return rp;
}

void on_stats(coordinator_pointer self, const caf::actor& collector) {
  auto& st = self->state;
  int32_t asked = 0;
  for (const Member& m : st.members) {
    self->send(m.handle, stats_atom::value, collector, m.restarts);
    ++asked;
  }
  // The coordinator is no sphere: the collector counts this report only.
  caf::anon_send(collector, stats_atom::value, SphereStats::count_only(), asked);
}

// An owner failed: its slice's sum of this round may be incomplete or torn (the weights and
// moments are the TrainState's, so nothing else is lost). Within the root's restart budget it is
// respawned on the same slot, and a step in flight runs its round again once every member has
// answered the current one; past the budget the run stops with the last step intact (exit 4).
void on_owner_failure(coordinator_pointer self, size_t k, std::string reason) {
  auto& st = self->state;
  st.owners[k] = nullptr;
  const ChildVerdict v =
      judge_failure(st.sv, int32_t(k), ChildEnd{ChildExit::crashed, std::move(reason), {}},
                    FaultEvent::owner_lost);
  if (!v.restart)
    return stop_run(self, st.sv.counts(),
                    fmt::format("the owner of slice {} failed ({}), past the root's restart "
                                "budget (--root-max-restarts/--root-restart-window)",
                                k, v.last.reason));
  auto setup = std::make_shared<OwnerSetup>(*st.owner_setups[k]);
  setup->crash_steps.clear();  // an injected crash fires once
  st.owner_setups[k] = setup;
  st.owners[k] = spawn_owner(self, std::move(setup));
  if (st.sv.active) st.round_lost = true;
}

void install_handlers(coordinator_pointer self) {
  end_on_exception(self, self->state.sv);
  const auto find = [self](const caf::actor_addr& who) { return find_member(self->state, who); };
  self->set_exit_handler([self, find](caf::exit_msg& em) {
    auto& st = self->state;
    for (size_t k = 0; k < st.owners.size(); ++k)
      if (st.owners[k] && st.owners[k].address() == em.source)
        return on_owner_failure(self, k, exit_reason_text(self->system(), em.reason));
    const size_t i = find(em.source);
    if (i == self->state.members.size()) return;  // already replaced or removed
    on_member_failure(self, i, read_child_exit(self->system(), em.reason));
  });
  self->set_down_handler([self, find](caf::down_msg& dm) {  // a node's link ended
    const size_t i = find(dm.source);
    auto& st = self->state;
    if (i == st.members.size()) return;
    const Member& m = st.members[i];
    if (m.leaving && !m.busy && m.held.empty()) return remove_leaver(self, i);
    lose_node(self, i, exit_reason_text(self->system(), dm.reason));
  });
}

coordinator_impl::behavior_type coordinator_behavior(coordinator_pointer self,
                                                     CoordinatorSetup setup) {
  auto& st = self->state;
  st.setup = std::move(setup);
  if (st.setup.local) {
    const auto& local = *st.setup.local;
    st.sv.intensity = RestartIntensity(local.policy.root_max_restarts, local.policy.root_window_s);
    Member m;
    m.name = "local";
    m.capacity = std::max(1, st.setup.local_capacity);
    m.height = local.topology.height(0);
    m.spheres = local.topology.size();
    m.handle = spawn_sphere(self, st.setup.local, 0);
    st.members.push_back(std::move(m));
  }
  if (st.setup.sums) {
    const ParamLayout layout(st.setup.run.model);
    const int n = int(st.setup.sums->size());
    const Slicing slicing(layout.total(), n);
    for (int k = 0; k < n; ++k) {
      OwnerSetup o{layout, k, slicing.begin(k), slicing.end(k), &(*st.setup.sums)[size_t(k)], {}};
      if (st.setup.local) o.crash_steps = st.setup.local->faults.owner_crash_steps(k);
      st.owner_setups.push_back(std::make_shared<const OwnerSetup>(std::move(o)));
      st.owners.push_back(spawn_owner(self, st.owner_setups.back()));
    }
  }
  install_handlers(self);
  return {
      [self](step_atom, const StepWork& work, const WeightsRef& weights, const ShardSetRef& set,
             const StepCtl& ctl) -> caf::result<Partial> {
        return on_step(self, work, weights, set, ctl);
      },
      [self](stats_atom, const caf::actor& collector, int64_t) { on_stats(self, collector); },
      [self](join_atom, link_actor link, const JoinedNode& node) {
        on_join(self, std::move(link), node);
      },
      [self](leave_atom, const caf::actor_addr& link) { on_leave(self, link); },
      [self](members_atom) { return membership(self->state); },
      [self](shutdown_atom) -> caf::result<bool> { return end_run(self); },
      [self](apply_atom, const SliceBodyRef& body) -> caf::result<bool> {
        return run_slices(self, body);
      },
      [self](orphan_atom, int64_t step) {
        auto& st = self->state;
        if (!st.sv.active || st.steps_begun != step || st.orphans.empty()) return;
        stop_run(self, st.sv.acc.faults,
                 fmt::format("no spheres left for {} shards of step {}: every node was lost and "
                             "none joined within {:g} s",
                             st.orphans.size(), st.sv.work.step + 1, st.setup.orphan_timeout_s));
      },
  };
}

}  // namespace

CoordinatorHandles spawn_coordinator(caf::actor_system& sys, CoordinatorSetup setup) {
  const auto c = sys.spawn(coordinator_behavior, std::move(setup));
  return {c, c};
}

}  // namespace cllm
