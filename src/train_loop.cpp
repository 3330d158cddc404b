#include "src/train_loop.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "src/atomic_file.hpp"
#include "src/clock.hpp"

namespace cllm {

TrainingLoop::TrainingLoop(TrainState& state, Backend& backend, Evaluator* evaluator,
                           int64_t eval_every, const StopToken& stop)
    : state_(state),
      backend_(backend),
      evaluator_(evaluator),
      eval_every_(eval_every),
      stop_(stop) {}

StepOutcome TrainingLoop::compute_and_apply(Attempts& a) {
  for (a.last = 0;; ++a.last) {
    // Attempt 1 always fits (its grid comes from exact maxima); an attempt 2 would be a bug.
    if (a.last > 2)
      throw std::logic_error(
          fmt::format("step {}: the exact-sum grid did not settle after {} attempts",
                      state_.step() + 1, a.last));
    const StepWork work = state_.next_work();
    const StepSums* total = nullptr;
    try {
      total = &backend_.run_step(work, state_.weights());
    } catch (BackendFailure& e) {
      FaultCounts all = a.faults;  // the earlier attempts' faults too, first
      all += e.faults;
      e.faults = std::move(all);
      throw;
    }
    a.timing += backend_.last_timing();
    a.faults += backend_.last_faults();
    const StepOutcome o = state_.apply(*total, work, backend_.slice_runner());
    backend_.release_sums();
    if (o.kind != StepOutcome::next_attempt) return o;
  }
}

StepRecord TrainingLoop::record(const StepOutcome& o, double ms, const Attempts& a) {
  StepRecord r;
  r.step = state_.step();
  r.last_step = state_.config().steps;
  r.loss = o.loss, r.lr = o.lr, r.grad_norm = o.grad_norm, r.tokens = o.tokens;
  r.step_ms = ms;
  r.tokens_per_s = double(o.tokens) / (ms / 1e3);
  r.attempt = a.last;
  r.timing = a.timing;
  r.timing.optimizer_ms += o.optimizer_ms;
  r.faults = a.faults;
  r.members = backend_.last_membership();
  const bool eval_now =
      evaluator_ && ((eval_every_ > 0 && r.step % eval_every_ == 0) || r.step == r.last_step);
  if (eval_now) r.eval = evaluator_->run(state_.weights()->data());
  return r;
}

LoopResult TrainingLoop::run(const std::vector<StepObserver*>& observers) {
  LoopResult res;
  res.first_step = state_.step();
  const auto fail = [&](int code, std::string why) {
    res.exit_code = code;
    res.stop_reason = std::move(why);
  };
  while (state_.step() < state_.config().steps) {
    if (stop_.requested()) {
      fail(130, fmt::format("interrupted after step {}; resume with --resume", state_.step()));
      break;
    }
    const auto t0 = SteadyClock::now();
    try {
      Attempts attempts;
      const StepOutcome o = compute_and_apply(attempts);
      res.attempts_after_first += attempts.last;
      if (o.kind == StepOutcome::nonfinite) {
        fail(3, fmt::format("step {}: the loss or gradient is not finite (NaN/Inf) or out of "
                            "range; the update was refused and the weights are those after step {}",
                            o.step + 1, o.step));
        break;
      }
      const StepRecord r = record(o, ms_since(t0), attempts);
      res.step_ms.push_back(r.step_ms);
      res.tokens_per_s.push_back(r.tokens_per_s);
      res.last = r;
      for (StepObserver* obs : observers) obs->on_step(r);
    } catch (const BackendFailure& e) {
      // The step was not applied: the state is the consistent result of the last step.
      res.failed_step_faults = e.faults;
      fail(4, e.what());
      break;
    } catch (const FileError& e) {
      fail(5, fmt::format("{}; stopped after step {}", e.what(), state_.step()));
      break;
    } catch (const std::exception& e) {
      // Whatever failed (a bug, bad_alloc in evaluation or a snapshot), the last applied step is
      // intact: the caller saves it.
      fail(1, fmt::format("stopped after step {}: {}", state_.step(), e.what()));
      break;
    }
  }
  return res;
}

}  // namespace cllm
