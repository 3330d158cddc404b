#pragma once
// What a synchronisation backend provides: compute every shard of a step and hand back the
// exact total. The actor tree, the mutex pool and the barrier pool implement this; everything
// else (optimizer, evaluation, metrics, checkpoints) is the shared session loop.
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "src/aligned.hpp"
#include "src/exact_sum.hpp"
#include "src/training.hpp"

namespace cllm {

using WeightsRef = std::shared_ptr<const AlignedVector<float>>;

// Where the time of one step went, summed over workers (milliseconds).
struct StepTiming {
  double compute_ms = 0;  // forward + backward
  double fold_ms = 0;     // shard gradient -> exact sum
  double reduce_ms = 0;   // merging partial sums (and holding a lock, for the mutex pool)
  int workers = 0;
};

// Raised by a backend when it cannot finish a step (e.g. the restart budget is exhausted).
struct BackendFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int workers() const = 0;
  // Computes every shard of `work` with `weights`; returns the exact total of all shards.
  virtual ExactGrad run_step(const StepWork& work, const WeightsRef& weights) = 0;
  virtual StepTiming last_timing() const = 0;
  // Per-worker statistics (an array of objects) for spheres.json.
  virtual nlohmann::json worker_stats() = 0;
  // Fault counters for the summary (zeros for a backend that cannot restart workers).
  virtual nlohmann::json fault_counters() {
    return {{"restarts", 0}, {"deadline_kills", 0}, {"subtree_restarts", 0}};
  }
};

}  // namespace cllm
