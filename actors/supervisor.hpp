#pragma once
// The supervision that a sphere (of its children) and the coordinator (of the local subtree)
// share; the policy, restart budget and counters, is src/supervision.hpp's RestartIntensity.
// Both supervisors keep their own list of children, because what a child holds differs (a
// sphere's child has one step's work; a coordinator's member has queues of shards and may be a
// node), but what a failure means is decided here, once:
//   - an exit message says how a child ended: crashed, or gave up with what its subtree counted;
//   - a failed child is counted, killed if it missed its deadline, and restarted or not;
//   - past the budget the supervisor answers the step in flight with the cause and quits with it;
//   - an exception ends the supervisor with its text, and the step in flight gets the same error.
#include <string>
#include <utility>

#include <caf/all.hpp>

#include "messages/messages.hpp"
#include "src/backend.hpp"
#include "src/clock.hpp"
#include "src/supervision.hpp"

namespace cllm {

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

// The verdict on one failed child: restart it, or give up (`last` names the failure).
struct ChildVerdict {
  bool restart = false;
  FaultEvent last;
};

// Counts the failure of `child` (sphere `sphere` of the tree) into `fc`, with what it inherited;
// kills it first if it missed its deadline (it may still be running); asks the budget.
template <class Self, class Handle>
ChildVerdict judge_child(Self self, RestartIntensity& intensity, FaultCounts& fc,
                         const Handle& child, int32_t sphere, bool in_step, int64_t step,
                         ChildEnd end) {
  fc += end.inherited;
  if (end.how == ChildExit::missed_deadline) self->send_exit(child, caf::exit_reason::kill);
  FaultEvent ev;
  ev.sphere = sphere;
  ev.step = in_step ? step : -1;
  ev.reason = std::move(end.reason);
  auto d = intensity.on_child_exit(end.how, std::move(ev), seconds_now(), in_step);
  ChildVerdict v{d.restart, d.counts.events.back()};
  fc += d.counts;
  return v;
}

// Past the budget: the step in flight (if any) is answered with the cause, and the supervisor
// quits with it, which takes its linked subtree down and tells its own supervisor (which restarts
// the whole subtree). What was counted travels in both, since a dead actor's promises are never
// answered in CAF 0.17.
template <class Self>
void give_up(Self self, bool in_step, caf::typed_response_promise<Partial>& rp, GiveUp g) {
  const caf::error err = make_sphere_error(sphere_errc::gave_up, caf::make_message(std::move(g)));
  if (in_step) rp.deliver(err);
  self->quit(err);
}

// An exception (an injected crash, a bug, bad_alloc) ends the supervisor with its text as the
// reason; `pending()` returns the promise of the step in flight, or null, so that nobody waits
// for a dead actor.
template <class Self, class Pending>
void end_on_exception(Self self, Pending pending) {
  self->set_exception_handler(
      [self, pending](caf::scheduled_actor*, std::exception_ptr& ep) -> caf::error {
        auto err = crash_error(ep);
        if (caf::typed_response_promise<Partial>* rp = pending()) rp->deliver(err);
        return err;
      });
}

}  // namespace cllm
