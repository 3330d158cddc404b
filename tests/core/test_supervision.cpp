// The supervision policy, without actors: restart intensity and step deadlines.
#include <catch2/catch.hpp>

#include "src/config.hpp"
#include "src/supervision.hpp"

using namespace cllm;

namespace {
FaultEvent child(int id, const char* reason = "boom") {
  FaultEvent e;
  e.sphere = id, e.step = 4, e.reason = reason;
  return e;
}
}  // namespace

TEST_CASE("restart intensity: R restarts within T seconds, then give up", "[supervision]") {
  RestartIntensity ri(3, 10.0);
  ri.begin_step();
  for (int i = 0; i < 3; ++i) {
    const auto d = ri.on_child_exit(ChildExit::crashed, child(1), 100.0 + i, /*in_step=*/false);
    REQUIRE(d.restart);
    REQUIRE(d.counts.restarts == 1);
    REQUIRE(d.counts.deadline_kills == 0);
    REQUIRE(d.counts.events.size() == 1);
    REQUIRE(d.counts.events[0].kind == FaultEvent::crashed);
    REQUIRE(d.counts.events[0].sphere == 1);
    REQUIRE(d.counts.events[0].reason == "boom");
  }
  const auto d = ri.on_child_exit(ChildExit::crashed, child(2), 103.0, false);
  REQUIRE_FALSE(d.restart);
  REQUIRE(d.counts.restarts == 0);  // a give-up restarts nothing
  REQUIRE(d.counts.events.size() == 1);
  REQUIRE(ri.budget_text() == "more than 3 restarts of its children within 10 s or one step");
}

TEST_CASE("restart intensity: failures older than the window are forgotten", "[supervision]") {
  RestartIntensity ri(2, 10.0);
  REQUIRE(ri.on_child_exit(ChildExit::crashed, child(1), 0.0, false).restart);
  REQUIRE(ri.on_child_exit(ChildExit::crashed, child(1), 5.0, false).restart);
  REQUIRE(ri.on_child_exit(ChildExit::crashed, child(1), 10.5, false).restart);  // 0.0 expired
  REQUIRE(ri.on_child_exit(ChildExit::crashed, child(1), 30.0, false).restart);
  REQUIRE(ri.on_child_exit(ChildExit::crashed, child(1), 31.0, false).restart);
  REQUIRE_FALSE(ri.on_child_exit(ChildExit::crashed, child(1), 32.0, false).restart);
}

TEST_CASE("restart intensity: never more than R within one step, however slow", "[supervision]") {
  RestartIntensity ri(2, 1.0);
  ri.begin_step();
  // Failures 5 s apart never fill the 1 s window, but the step's own bound holds.
  REQUIRE(ri.on_child_exit(ChildExit::crashed, child(1), 0.0, true).restart);
  REQUIRE(ri.on_child_exit(ChildExit::crashed, child(1), 5.0, true).restart);
  REQUIRE_FALSE(ri.on_child_exit(ChildExit::crashed, child(1), 10.0, true).restart);
  RestartIntensity next(2, 1.0);
  next.begin_step();
  REQUIRE(next.on_child_exit(ChildExit::crashed, child(1), 0.0, true).restart);
  next.begin_step();  // a new step starts a new count
  REQUIRE(next.on_child_exit(ChildExit::crashed, child(1), 5.0, true).restart);
  REQUIRE(next.on_child_exit(ChildExit::crashed, child(1), 10.0, true).restart);
}

TEST_CASE("restart intensity: what each kind of exit counts", "[supervision]") {
  RestartIntensity ri(10, 10.0);
  const auto late = ri.on_child_exit(ChildExit::missed_deadline, child(3, "missed"), 0, true);
  REQUIRE(late.restart);
  REQUIRE(late.counts.deadline_kills == 1);
  REQUIRE(late.counts.restarts == 1);
  REQUIRE(late.counts.events[0].kind == FaultEvent::missed_deadline);
  const auto sub = ri.on_child_exit(ChildExit::gave_up, child(4, "gave up"), 0, true);
  REQUIRE(sub.counts.subtree_restarts == 1);
  REQUIRE(sub.counts.restarts == 0);
  REQUIRE(sub.counts.events[0].kind == FaultEvent::gave_up);
  // A zero budget gives up at the first failure, still counting the kill.
  RestartIntensity none(0, 10.0);
  const auto d = none.on_child_exit(ChildExit::missed_deadline, child(1), 0, true);
  REQUIRE_FALSE(d.restart);
  REQUIRE(d.counts.deadline_kills == 1);
}

TEST_CASE("step deadline: floor, factor x median, first-step estimate, subtree height",
          "[supervision]") {
  SupervisionPolicy p;
  p.deadline_factor = 4, p.deadline_floor_s = 2, p.first_deadline_s = 60;
  StepDeadline small(p, /*first_step_estimate_s=*/1.0);
  REQUIRE(small.base_ms() == 60000);  // before any step: at least first_deadline_s
  StepDeadline big(p, 100.0);
  REQUIRE(big.base_ms() == 400000);  // 4 x a pessimistic estimate of a big first step
  for (double ms : {100.0, 120.0, 110.0}) small.record_step(ms);
  REQUIRE(small.base_ms() == 2000);                           // 4 x 110 ms is under the 2 s floor
  for (int i = 0; i < 9; ++i) small.record_step(1000.0 + i);  // only the last 9 count
  REQUIRE(small.base_ms() == 4 * 1004);
  REQUIRE(StepDeadline::for_subtree(2000, 0) == 2000);
  REQUIRE(StepDeadline::for_subtree(2000, 3) == 8000);
  REQUIRE(StepDeadline::for_subtree(int64_t(1e9), 1000000) == int64_t(1e12));  // capped
}

TEST_CASE("step deadline: a slow machine is not a hang (resends and missed steps back off)",
          "[supervision]") {
  SupervisionPolicy p;
  p.deadline_factor = 4, p.deadline_floor_s = 2, p.first_deadline_s = 60;
  StepDeadline d(p, 1.0);
  for (int i = 0; i < 9; ++i) d.record_step(1000);
  REQUIRE(d.base_ms() == 4000);
  // A step that missed a deadline doubles D for the next, up to 64 x ...
  d.record_step(1000, true);
  REQUIRE(d.base_ms() == 8000);
  d.record_step(1000, true);
  REQUIRE(d.base_ms() == 16000);
  for (int i = 0; i < 10; ++i) d.record_step(1000, true);
  REQUIRE(d.base_ms() == 64 * 4000);
  // ... and each step that missed none halves it again.
  d.record_step(1000);
  REQUIRE(d.base_ms() == 32 * 4000);
  for (int i = 0; i < 6; ++i) d.record_step(1000);
  REQUIRE(d.base_ms() == 4000);
  // Each resend of the same work doubles its deadline, capped.
  REQUIRE(StepDeadline::for_resend(4000, 0) == 4000);
  REQUIRE(StepDeadline::for_resend(4000, 1) == 8000);
  REQUIRE(StepDeadline::for_resend(4000, 3) == 32000);
  REQUIRE(StepDeadline::for_resend(4000, 50) == 4000 << 10);
  REQUIRE(StepDeadline::for_resend(int64_t(1e12), 5) <= int64_t(1e12));
}

TEST_CASE("supervision policy: impossible values are refused", "[supervision]") {
  SupervisionPolicy p;
  REQUIRE_NOTHROW(p.validate());
  p.deadline_factor = 1.5;
  REQUIRE_THROWS_AS(p.validate(), ConfigError);
  p = SupervisionPolicy{};
  p.window_s = 0;
  REQUIRE_THROWS_AS(p.validate(), ConfigError);
  p = SupervisionPolicy{};
  p.max_restarts = -1;
  REQUIRE_THROWS_AS(p.validate(), ConfigError);
}
