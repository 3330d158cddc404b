#include "actors/coordinator.hpp"

#include <deque>
#include <map>
#include <string>

#include <fmt/format.h>

#include "src/clock.hpp"

namespace cllm {

namespace {

// A member of the step: the local subtree, or (later) a remote node.
struct Member {
  std::string name;
  sphere_actor handle;
  int capacity = 1;  // spheres: its share of the shards
  int height = 0;    // levels below its top sphere, for its deadline
  bool local = false;
  // The step in progress.
  bool busy = false;
  uint64_t generation = 0;  // bumps on every (re)send; stale replies are ignored
  int32_t resends = 0;
  std::vector<int32_t> in_flight;          // shards of the request in flight
  std::deque<std::vector<int32_t>> queue;  // shards dealt to it, not yet sent
  int64_t restarts = 0;
};

struct CoordinatorState {
  static inline const char* name = "coordinator";

  ~CoordinatorState() {  // see ~SphereState: no recursive teardown
    for (const auto& m : members)
      if (m.handle) caf::anon_send_exit(m.handle, caf::exit_reason::kill);
  }

  std::shared_ptr<const TreeSetup> local;
  std::vector<Member> members;
  RestartIntensity intensity{0, 1};
  std::map<int, std::shared_ptr<const ShardPlan>> plans;  // local placement per shard count
  // The step in progress.
  bool active = false;
  StepWork work;
  WeightsRef weights;
  int64_t deadline_ms = 0;
  Partial acc;
  int remaining = 0;  // shards not yet summed
  caf::typed_response_promise<Partial> rp;
  FaultCounts between_steps;
};

using coordinator_pointer = coordinator_actor::stateful_pointer<CoordinatorState>;

// Shards dealt over the members in proportion to their capacity: each shard goes to the member
// with the fewest shards per sphere so far (ties: the earlier member), so the deal interleaves.
std::vector<std::vector<int32_t>> deal(const std::vector<int32_t>& shards,
                                       const std::vector<int>& capacity) {
  std::vector<std::vector<int32_t>> out(capacity.size());
  for (int32_t s : shards) {
    size_t best = 0;
    for (size_t m = 1; m < capacity.size(); ++m)
      if (double(out[m].size() + 1) / capacity[m] < double(out[best].size() + 1) / capacity[best])
        best = m;
    out[best].push_back(s);
  }
  return out;
}

AssignmentRef assignment_for(CoordinatorState& st, const Member& m,
                             const std::vector<int32_t>& shards) {
  auto a = std::make_shared<Assignment>();
  a->shards = shards;
  if (m.local) {
    auto& plan = st.plans[int(shards.size())];
    if (!plan)
      plan = std::make_shared<const ShardPlan>(st.local->topology, int(shards.size()),
                                               st.local->placement);
    a->plan = plan;
  }
  return a;
}

void on_member_failure(coordinator_pointer self, size_t i, ChildExit how, std::string reason,
                       const FaultCounts& inherited);

void maybe_finish(coordinator_pointer self) {
  auto& st = self->state;
  if (!st.active || st.remaining > 0) return;
  st.acc.faults += st.between_steps;
  st.between_steps = FaultCounts{};
  st.active = false;
  st.weights.reset();
  st.rp.deliver(std::move(st.acc));
  st.acc = Partial{};
}

// Sends the member its next dealt shards, if it is free and has any.
void dispatch(coordinator_pointer self, size_t i) {
  auto& st = self->state;
  Member& m = st.members[i];
  if (m.busy || m.queue.empty()) return;
  m.in_flight = std::move(m.queue.front());
  m.queue.pop_front();
  m.busy = true;
  const uint64_t gen = ++m.generation;
  StepCtl ctl;
  ctl.delivery = next_delivery(0, m.resends);
  ctl.deadline_ms = st.deadline_ms;
  const auto timeout =
      std::chrono::milliseconds(StepDeadline::for_subtree(st.deadline_ms, m.height));
  const caf::actor_addr addr = m.handle.address();
  self->request(m.handle, timeout, step_atom::value, st.work, st.weights,
                assignment_for(st, m, m.in_flight), ctl)
      .then(
          [=](Partial& p) {
            auto& s = self->state;
            if (i >= s.members.size() || s.members[i].generation != gen || !s.active) return;
            Member& mm = s.members[i];
            s.remaining -= int(mm.in_flight.size());
            mm.in_flight.clear();
            mm.busy = false;
            s.acc.merge(p);
            dispatch(self, i);
            maybe_finish(self);
          },
          [=](caf::error& err) {
            auto& s = self->state;
            // Crashes arrive as exit messages and are handled there; here only the deadline.
            if (err != caf::sec::request_timeout || i >= s.members.size() || !s.active ||
                s.members[i].generation != gen || s.members[i].handle.address() != addr)
              return;
            on_member_failure(self, i, ChildExit::missed_deadline,
                              fmt::format("missed its deadline of {} ms", timeout.count()), {});
          });
}

void give_up(coordinator_pointer self, const FaultCounts& counted, const FaultEvent& last) {
  auto& st = self->state;
  const GiveUp g{
      fmt::format("sphere 0 failed more than {} times within {:g} s or one step (the "
                  "root's restart budget, --root-max-restarts/--root-restart-window); {}",
                  st.local->policy.root_max_restarts, st.local->policy.root_window_s,
                  last_failure_text(last)),
      counted};
  if (st.active) st.rp.deliver(make_sphere_error(sphere_errc::gave_up, caf::make_message(g)));
  self->quit(make_sphere_error(sphere_errc::gave_up, caf::make_message(g)));
}

// The local subtree failed: the root's budget decides; respawn sphere 0 and send its shards again.
void on_member_failure(coordinator_pointer self, size_t i, ChildExit how, std::string reason,
                       const FaultCounts& inherited) {
  auto& st = self->state;
  Member& m = st.members[i];
  FaultCounts& fc = st.active ? st.acc.faults : st.between_steps;
  fc += inherited;
  if (how == ChildExit::missed_deadline) self->send_exit(m.handle, caf::exit_reason::kill);
  FaultEvent ev;
  ev.sphere = 0;
  ev.step = st.active ? st.work.step : -1;
  ev.reason = std::move(reason);
  auto d = st.intensity.on_child_exit(how, std::move(ev), seconds_now(), st.active);
  const FaultEvent last = d.counts.events.back();
  fc += d.counts;
  if (!d.restart) return give_up(self, fc, last);
  ++m.restarts;
  m.handle = spawn_sphere(self, st.local, 0);
  if (st.active && m.busy) {  // the same shards again, as a fresh delivery
    m.busy = false;
    ++m.resends;
    m.queue.push_front(std::move(m.in_flight));
    dispatch(self, i);
  }
}

caf::result<Partial> on_step(coordinator_pointer self, const StepWork& work,
                             const WeightsRef& weights, int64_t deadline_ms) {
  auto& st = self->state;
  st.rp = self->make_response_promise<Partial>();
  if (st.members.empty()) {
    st.rp.deliver(make_sphere_error(sphere_errc::crashed,
                                    caf::make_message(std::string("the tree has no spheres"))));
    return st.rp;
  }
  st.active = true;
  st.work = work, st.weights = weights, st.deadline_ms = deadline_ms;
  st.acc = Partial{};
  st.remaining = work.shards;
  st.intensity.begin_step();
  std::vector<int32_t> shards(size_t(work.shards));
  for (int32_t s = 0; s < work.shards; ++s) shards[size_t(s)] = s;
  std::vector<int> capacity;
  for (const Member& m : st.members) capacity.push_back(m.capacity);
  const auto dealt = deal(shards, capacity);
  for (size_t i = 0; i < st.members.size(); ++i) {
    Member& m = st.members[i];
    m.busy = false, m.resends = 0, m.in_flight.clear(), m.queue.clear();
    if (!dealt[i].empty()) m.queue.push_back(dealt[i]);
    dispatch(self, i);
  }
  auto rp = st.rp;
  maybe_finish(self);
  return rp;
}

void on_stats(coordinator_pointer self, const caf::actor& collector) {
  auto& st = self->state;
  int32_t asked = 0;
  for (const Member& m : st.members) {
    self->send(m.handle, stats_atom::value, collector, m.restarts);
    ++asked;
  }
  SphereStats none;
  none.id = -1;  // the coordinator is no sphere: the collector counts this report only
  caf::anon_send(collector, stats_atom::value, none, asked);
}

void install_handlers(coordinator_pointer self) {
  self->set_exception_handler([self](caf::scheduled_actor*, std::exception_ptr& ep) -> caf::error {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    auto err = make_sphere_error(sphere_errc::crashed, caf::make_message(what));
    if (self->state.active) self->state.rp.deliver(err);  // nobody waits for a dead actor
    return err;
  });
  self->set_exit_handler([self](caf::exit_msg& em) {
    auto& st = self->state;
    for (size_t i = 0; i < st.members.size(); ++i) {
      if (st.members[i].handle.address() != em.source) continue;
      if (const GiveUp* g = as_give_up(em.reason))
        on_member_failure(self, i, ChildExit::gave_up, g->cause, g->faults);
      else
        on_member_failure(self, i, ChildExit::crashed, exit_reason_text(self->system(), em.reason),
                          {});
      return;
    }
  });
}

coordinator_actor::behavior_type coordinator_behavior(coordinator_pointer self,
                                                      std::shared_ptr<const TreeSetup> local,
                                                      int local_capacity) {
  auto& st = self->state;
  st.local = local;
  if (local) {
    st.intensity = RestartIntensity(local->policy.root_max_restarts, local->policy.root_window_s);
    Member m;
    m.name = "local";
    m.local = true;
    m.capacity = std::max(1, local_capacity);
    m.height = local->topology.height(0);
    m.handle = spawn_sphere(self, local, 0);
    st.members.push_back(std::move(m));
  }
  install_handlers(self);
  return {
      [self](step_atom, const StepWork& work, const WeightsRef& weights, int64_t deadline_ms)
          -> caf::result<Partial> { return on_step(self, work, weights, deadline_ms); },
      [self](stats_atom, const caf::actor& collector, int64_t) { on_stats(self, collector); },
  };
}

}  // namespace

coordinator_actor spawn_coordinator(caf::actor_system& sys, std::shared_ptr<const TreeSetup> local,
                                    int local_capacity) {
  return sys.spawn(coordinator_behavior, std::move(local), local_capacity);
}

}  // namespace cllm
