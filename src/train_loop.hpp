#pragma once
// The training loop (in the root process), shared by every backend: each step asks the backend for
// the exact total of all shards, applies it (another attempt at the step when the exact-sum grid
// must widen), evaluates on schedule, and emits one StepRecord to its observers (metrics file,
// progress line, checkpoints, the live page ...). It stops at the last step, on a stop request, or
// at the first failure, always leaving the TrainState at the last applied step.
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "src/backend.hpp"
#include "src/evaluate.hpp"
#include "src/training.hpp"

namespace cllm {

// A request to stop after the current step. request() is async-signal-safe (a lock-free atomic
// store), so a signal handler may call it.
class StopToken {
 public:
  void request() noexcept { stop_.store(true, std::memory_order_relaxed); }
  bool requested() const noexcept { return stop_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> stop_{false};
  static_assert(std::atomic<bool>::is_always_lock_free);
};

// What one applied step did.
struct StepRecord {
  int64_t step = 0;  // optimizer steps completed, this one included
  int64_t last_step = 0;
  double loss = 0, lr = 0, grad_norm = 0;
  int64_t tokens = 0;
  double step_ms = 0, tokens_per_s = 0;
  int32_t attempt = 0;  // the attempt applied: > 0 when the exact-sum grid had to widen
  StepTiming timing;
  FaultCounts faults;  // handled during this step (and between the previous and this one)
  Membership members;  // who computed it
  std::optional<EvalResult> eval;
};

class StepObserver {
 public:
  virtual ~StepObserver() = default;
  // May throw: a FileError stops the run with exit code 5, anything else with 1.
  virtual void on_step(const StepRecord& r) = 0;
};

struct LoopResult {
  int64_t first_step = 0;  // steps already done when the loop started
  std::optional<StepRecord> last;
  int exit_code = 0;        // 0 done, 1 a failure, 3 non-finite, 4 the backend gave up, 5 a file
  std::string stop_reason;  // empty when the run completed
  FaultCounts failed_step_faults;  // what the backend counted in a step it could not finish
  std::vector<double> step_ms, tokens_per_s;  // per applied step
  int64_t attempts_after_first = 0;           // over the steps computed, each widened its grid
};

class TrainingLoop {
 public:
  // `evaluator` may be null (no validation data); eval_every 0 = only after the last step.
  TrainingLoop(TrainState& state, Backend& backend, Evaluator* evaluator, int64_t eval_every,
               const StopToken& stop);
  LoopResult run(const std::vector<StepObserver*>& observers);

 private:
  // What a step's attempts did together: attempt 1 recomputes the step, and what happened in
  // attempt 0 (a lost node, a restart, bytes sent) still happened.
  struct Attempts {
    int32_t last = 0;  // the attempt that ended the step (0 = the first)
    StepTiming timing;
    FaultCounts faults;
  };
  // One step with all its attempts; throws whatever the backend or apply() throws.
  StepOutcome compute_and_apply(Attempts& a);
  StepRecord record(const StepOutcome& o, double ms, const Attempts& a);

  TrainState& state_;
  Backend& backend_;
  Evaluator* evaluator_;
  int64_t eval_every_;
  const StopToken& stop_;
};

}  // namespace cllm
