#pragma once
// Supervision as policy, without actors (OTP keeps child specs and restart strategy as data; so
// do we). The sphere actor feeds its children's exits and the clock into these objects and does
// what they decide; unit tests call them directly.
#include <cstdint>
#include <deque>
#include <string>

#include "src/backend.hpp"

namespace cllm {

// OTP-style restart intensity and step deadlines.
struct SupervisionPolicy {
  int max_restarts = 10;      // a sphere restarts at most this many children ...
  double window_s = 10.0;     // ... within this many seconds, else it gives up
  int root_max_restarts = 3;  // the root budget: the coordinator's, for its one child, sphere 0
  double root_window_s = 60.0;
  double deadline_factor = 4.0;    // deadline = factor x median recent step time ...
  double deadline_floor_s = 2.0;   // ... but at least this
  double first_deadline_s = 60.0;  // before any step time is known (at least)

  void validate() const;  // throws ConfigError
};

// How a child ended, as its supervisor saw it.
enum class ChildExit { crashed, missed_deadline, gave_up };

// The restart-intensity state of one supervisor: at most `max_restarts` restarts within
// `window_s` seconds, and never more than `max_restarts` within one step (with slow steps,
// failures could otherwise be spaced wider than the window for ever).
class RestartIntensity {
 public:
  RestartIntensity(int max_restarts, double window_s);
  void begin_step() { this_step_ = 0; }

  struct Decision {
    bool restart = true;  // false: the budget is spent and the supervisor gives up
    FaultCounts counts;   // what this exit adds to the counters (with its event)
  };
  // A child ended at `now_s` (seconds on any monotonic clock). `event` names the child and the
  // reason; its kind is set from `how`.
  Decision on_child_exit(ChildExit how, FaultEvent event, double now_s, bool in_step);

  // "more than 10 restarts of its children within 10 s or one step"
  std::string budget_text() const;

 private:
  int max_restarts_;
  double window_s_;
  std::deque<double> times_;
  int this_step_ = 0;
};

// "the last: sphere 5 crashed (injected crash)": the failure that spent a restart budget.
std::string last_failure_text(const FaultEvent& last);

// The delivery number of a child's work: 0 only when neither it nor any ancestor was resent
// (injections fire only then); otherwise a hash of the parent's delivery and the resend count,
// so that a chaos draw is not repeated after a resend or a subtree restart.
int32_t next_delivery(int32_t parent, int32_t resend);

// The step deadline D: max(floor, factor x median of the last 9 step times), and before any
// step time is known, the larger of first_deadline_s and 4x a pessimistic estimate of the step's
// work. A child whose subtree is h levels high gets D x (h + 1), so a fault is caught by its
// lowest ancestor first and a respawned child can finish before the next level's timer fires.
// A slow machine is not a hang: each resend of the same work doubles its deadline, and after a
// step in which a deadline was missed D doubles too (up to 64 x), halving again with each step
// that missed none. (On a machine overloaded by other work, steps 10x slower than the median
// used to be killed until the restart budget gave up on a healthy run.)
class StepDeadline {
 public:
  // first_step_estimate_s: a pessimistic guess of one step's duration.
  StepDeadline(const SupervisionPolicy& policy, double first_step_estimate_s);
  int64_t base_ms() const;
  // A finished step's duration, and whether a deadline was missed in it.
  void record_step(double ms, bool missed = false);
  // D x (height + 1), capped at ~30 years (CAF converts to nanoseconds, which must not overflow).
  static int64_t for_subtree(int64_t base_ms, int height);
  // The deadline of the n-th resend of the same work: 2^n x (n at most 10), capped likewise.
  static int64_t for_resend(int64_t ms, int32_t resends);

 private:
  SupervisionPolicy policy_;
  double first_ms_;
  std::deque<double> recent_;
  int backoff_ = 1;
};

}  // namespace cllm
