#pragma once
// One supervisor, shared by a sphere (of its child subtrees) and the coordinator (of its members:
// the local subtree and the nodes' links): children, their work in flight, restart, resend and
// giving up. The policy (restart budget, counters) is src/supervision.hpp's RestartIntensity.
// What differs stays with each: which work a child gets (a sphere's child: the step's whole
// assignment for its subtree; a member: queued shards), how a child is found again (a sphere's
// children are fixed, a coordinator's members come and go), and that a lost node is not
// restarted but has its shards dealt to the others.
//   - an exit message says how a child ended: crashed, or gave up with what its subtree counted;
//   - a failed child is counted, killed if it missed its deadline, and restarted (its work sent
//     again as a fresh delivery) or not;
//   - past the budget the supervisor answers the step in flight with the cause and quits with it;
//   - an exception ends the supervisor with its text, and the step in flight gets the same error.
#include <chrono>
#include <string>
#include <utility>

#include <fmt/format.h>

#include <caf/all.hpp>

#include "messages/messages.hpp"
#include "src/backend.hpp"
#include "src/clock.hpp"
#include "src/supervision.hpp"

namespace cllm {

// A supervised child, as far as work and restarts go.
struct ChildSlot {
  sphere_actor handle;
  uint64_t generation = 0;  // bumps on every (re)send; stale replies are ignored
  bool busy = false;        // its work of the step in flight is out
  int32_t resends = 0;      // resends of the step's work
  int64_t restarts = 0;     // times it was respawned
};

// What a supervisor answers for: the step in flight (its sum so far, who waits for it), the
// restart budget, and the failures of children between steps (reported with the next step).
struct Supervision {
  RestartIntensity intensity{0, 1};
  bool active = false;
  StepWork work;
  Partial acc;
  caf::typed_response_promise<Partial> rp;
  FaultCounts between_steps;

  FaultCounts& counts() { return active ? acc.faults : between_steps; }

  template <class Self>
  void begin(Self self, const StepWork& w) {
    rp = self->template make_response_promise<Partial>();
    active = true;
    work = w;
    acc = Partial{};
    intensity.begin_step();
  }
  // The step's sum goes to whoever asked, with the failures counted between steps.
  void answer() {
    acc.faults += between_steps;
    between_steps = FaultCounts{};
    active = false;
    rp.deliver(std::move(acc));
    acc = Partial{};
  }
};

// How a child ended, as its exit message tells.
struct ChildEnd {
  ChildExit how = ChildExit::crashed;
  std::string reason;     // what it died of
  FaultCounts inherited;  // what its subtree had counted, when it gave up
};

inline ChildEnd read_child_exit(caf::actor_system& sys, const caf::error& reason) {
  if (const GiveUp* g = as_give_up(reason)) return {ChildExit::gave_up, g->cause, g->faults};
  return {ChildExit::crashed, exit_reason_text(sys, reason), {}};
}

// Sends child `c` the step's work, its subtree `height` levels deep, under the deadline of that
// height, doubled for each resend (a slow machine is not a hang); the delivery number is
// ctl.delivery advanced by the child's resends. `find(address)`
// is the child now at that address, or null: answers of a replaced child or of an older sending
// are dropped. The answer goes to `on_reply(address, Partial&)` (the child is no longer busy);
// a missed deadline to `on_failure(address, ChildEnd)`, and so is any other error when
// `errors_fail` (a node's link answers with its loss; a local sphere's crash arrives as its exit
// message instead).
template <class Self, class Find, class OnReply, class OnFailure>
void send_work(Self self, const Supervision& sv, ChildSlot& c, int height, const WeightsRef& w,
               AssignmentRef assignment, StepCtl ctl, bool errors_fail, Find find, OnReply on_reply,
               OnFailure on_failure) {
  const uint64_t gen = ++c.generation;
  c.busy = true;
  ctl.delivery = next_delivery(ctl.delivery, c.resends);
  const auto timeout = std::chrono::milliseconds(
      StepDeadline::for_resend(StepDeadline::for_subtree(ctl.deadline_ms, height), c.resends));
  const caf::actor_addr addr = c.handle.address();
  const auto current = [&sv, find, addr, gen]() -> ChildSlot* {
    ChildSlot* now = find(addr);
    return now && sv.active && now->generation == gen ? now : nullptr;
  };
  self->request(c.handle, timeout, step_atom::value, sv.work, w, std::move(assignment), ctl)
      .then(
          [=](Partial& p) {
            if (ChildSlot* now = current()) {
              now->busy = false;
              on_reply(addr, p);
            }
          },
          [=](caf::error& err) {
            if (!current()) return;
            if (err == caf::sec::request_timeout)
              on_failure(addr,
                         ChildEnd{ChildExit::missed_deadline,
                                  fmt::format("missed its deadline of {} ms", timeout.count()),
                                  {}});
            else if (errors_fail)
              on_failure(addr,
                         ChildEnd{ChildExit::crashed, exit_reason_text(self->system(), err), {}});
          });
}

// The verdict on one failure: restart, or give up (`last` names the failure).
struct ChildVerdict {
  bool restart = false;
  FaultEvent last;
};

// Counts the failure of child `who` (a sphere, or an owner) into the supervision, with what it
// inherited, and asks the budget. `kind`: the event's kind where it is not the exit's own
// (an owner's crash is FaultEvent::owner_lost).
inline ChildVerdict judge_failure(Supervision& sv, int32_t who, ChildEnd end, int32_t kind = -1) {
  FaultCounts& fc = sv.counts();
  fc += end.inherited;
  FaultEvent ev;
  ev.sphere = who;
  ev.step = sv.active ? sv.work.step : -1;
  ev.reason = std::move(end.reason);
  auto d = sv.intensity.on_child_exit(end.how, std::move(ev), seconds_now(), sv.active);
  if (kind >= 0) d.counts.events.back().kind = kind;
  ChildVerdict v{d.restart, d.counts.events.back()};
  fc += d.counts;
  return v;
}

// Past the budget: the step in flight (if any) is answered with the cause, and the supervisor
// quits with it, which takes its linked subtree down and tells its own supervisor (which restarts
// the whole subtree). What was counted travels in both, since a dead actor's promises are never
// answered in CAF 0.17.
template <class Self>
void give_up(Self self, Supervision& sv, GiveUp g) {
  const caf::error err = make_sphere_error(sphere_errc::gave_up, caf::make_message(std::move(g)));
  if (sv.active) sv.rp.deliver(err);
  self->quit(err);
}

// Child `c` (sphere `sphere` of the tree) failed: counted with what it inherited, killed first if
// it missed its deadline (it may still be running), judged by the budget. Then either respawned in
// place (`respawn()` returns the new handle) with its work of the step in flight sent again
// (`resend()`, after the resend is counted), or the supervisor gives up with `cause(last)`.
template <class Self, class Respawn, class Resend, class Cause>
void restart_or_give_up(Self self, Supervision& sv, ChildSlot& c, int32_t sphere, ChildEnd end,
                        Respawn respawn, Resend resend, Cause cause) {
  if (end.how == ChildExit::missed_deadline) self->send_exit(c.handle, caf::exit_reason::kill);
  const ChildVerdict v = judge_failure(sv, sphere, std::move(end));
  if (!v.restart) return give_up(self, sv, GiveUp{cause(v.last), sv.counts()});
  ++c.restarts;
  c.handle = respawn();
  if (sv.active && c.busy) {
    c.busy = false;
    ++c.resends;
    resend();
  }
}

// An exception (an injected crash, a bug, bad_alloc) ends the supervisor with its text as the
// reason, and the step in flight, if any, gets the same error, so that nobody waits for a dead
// actor.
template <class Self>
void end_on_exception(Self self, Supervision& sv) {
  self->set_exception_handler([&sv](caf::scheduled_actor*, std::exception_ptr& ep) -> caf::error {
    auto err = crash_error(ep);
    if (sv.active) sv.rp.deliver(err);
    return err;
  });
}

}  // namespace cllm
