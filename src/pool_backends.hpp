#pragma once
// The classic thread-pool baselines the actor tree replaces, as Backend implementations. They
// exist to be compared with the tree (cllm-bench-sync) and must compute the same numbers: every
// shard goes through ShardWorker and every sum through ExactGrad, exactly as in the tree, so the
// weights after N steps are bit-identical to the reference loop's.
//
// Owners: like the tree, a pool cuts the parameter vector into one slice per worker (Slicing over
// fixed blocks). Worker k owns slice k: it holds that slice's exact sum for the step and, in
// run_slices(), runs the optimizer's work for it (block norms, then AdamW) on its own thread.
//
// Shard assignment (both pools): static, shard s -> worker s mod workers, the same rule as the
// tree (Topology::own_shards). A shared "next shard" counter would balance better when shards
// differ in cost, but here every shard costs the same and the static rule keeps the comparison
// with the tree like for like.
//
// MutexBackend: `workers` std::threads, started once and reused every step. Per shard a worker
//   computes the shard's float gradient, then folds it into every slice's shared sum, each under
//   that slice's std::mutex (starting with its own slice, so that workers seldom queue on one).
//   The caller of run_step waits on a condition variable until every worker has finished.
//
// BarrierBackend: `workers` std::threads with one whole-vector ExactGrad accumulator each (no
//   lock while computing). A barrier ends the compute phase; the reduction is a reduce-scatter:
//   worker k adds slice k of every worker's accumulator (in worker order) into its slice's sum, all
//   at once, and a last barrier hands the slices to the caller of run_step.
//
// Both: a worker that throws (bad_alloc, an invalid step) never deadlocks the pool; the first
// exception is rethrown from run_step as BackendFailure and the pool stays usable. The destructor
// stops and joins every thread, whether or not a step ever ran.
//
// Words: a worker is one of the pool's threads (it computes with a ShardWorker of its own). Where
// the Backend interface counts spheres (spheres(), sphere_stats(), StepTiming::spheres), a pool
// reports its workers.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "src/backend.hpp"
#include "src/params.hpp"
#include "src/sampler.hpp"
#include "src/training.hpp"

namespace cllm {

// A reusable barrier for a fixed number of participants (generation counting, std::mutex +
// std::condition_variable). arrive_and_wait() returns true when every participant arrived, false
// when the barrier was broken (then it never blocks again).
class GenerationBarrier {
 public:
  explicit GenerationBarrier(int participants);
  bool arrive_and_wait();
  void break_barrier();  // wakes every waiter; used to abandon a pool that failed to start
  // Blocks until `n` participants wait in the current generation (or the barrier is broken):
  // lets a test break the barrier under a waiter that has really arrived.
  void wait_for_arrivals(int n);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  const int participants_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool broken_ = false;
};

namespace detail {
struct PoolWorker;  // one worker thread's ShardWorker, accumulator and statistics
}

class MutexBackend final : public Backend {
 public:
  // Throws ConfigError for workers < 1. `sampler` must outlive the backend.
  MutexBackend(const RunConfig& run, const WindowSampler& sampler, int workers);
  ~MutexBackend() override;
  MutexBackend(const MutexBackend&) = delete;
  MutexBackend& operator=(const MutexBackend&) = delete;

  std::string name() const override { return "mutex"; }
  int spheres() const override { return spheres_; }
  const StepSums& run_step(const StepWork& work, const WeightsRef& weights) override;
  void run_slices(int n, const std::function<void(int)>& body) override;
  // compute/fold: summed over threads (fold: into every slice, under its lock); reduce: waiting
  // for the slices' locks, summed over threads; spheres: the threads that computed a shard.
  StepTiming last_timing() const override { return timing_; }
  std::vector<SphereStats> sphere_stats() override;

 private:
  void worker_main(int id);
  void stop_threads();
  // Wakes every worker for one task (the step's shards, or a slice body) and waits for them.
  std::exception_ptr run_generation(const StepWork* work, const float* weights,
                                    const std::function<void(int)>* body);

  RunConfig run_;
  const WindowSampler& sampler_;
  ParamLayout layout_;
  int spheres_;
  std::vector<std::unique_ptr<detail::PoolWorker>> workers_;
  std::vector<std::thread> threads_;

  // Step hand-off, all guarded by ctl_mu_.
  std::mutex ctl_mu_;
  std::condition_variable start_cv_, done_cv_;
  uint64_t generation_ = 0;
  bool stop_ = false;
  int remaining_ = 0;
  const StepWork* work_ = nullptr;
  const float* weights_ = nullptr;
  const std::function<void(int)>* body_ = nullptr;  // set: run body_(id) instead of shards
  std::exception_ptr error_;
  std::atomic<bool> failed_{false};

  // The slices' shared sums, one lock each.
  Slicing slicing_;
  std::unique_ptr<std::mutex[]> slice_mu_;
  StepSums sums_;

  StepTiming timing_;
};

class BarrierBackend final : public Backend {
 public:
  // Throws ConfigError for workers < 1. `sampler` must outlive the backend.
  BarrierBackend(const RunConfig& run, const WindowSampler& sampler, int workers);
  ~BarrierBackend() override;
  BarrierBackend(const BarrierBackend&) = delete;
  BarrierBackend& operator=(const BarrierBackend&) = delete;

  std::string name() const override { return "barrier"; }
  int spheres() const override { return spheres_; }
  const StepSums& run_step(const StepWork& work, const WeightsRef& weights) override;
  void run_slices(int n, const std::function<void(int)>& body) override;
  // compute/fold: summed over threads; reduce: time in the reduce-scatter (and its barrier),
  // summed over threads; spheres: the threads that computed a shard.
  StepTiming last_timing() const override { return timing_; }
  std::vector<SphereStats> sphere_stats() override;

 private:
  void worker_main(int id);
  void record_error(std::exception_ptr e);

  RunConfig run_;
  const WindowSampler& sampler_;
  ParamLayout layout_;
  int spheres_;
  std::vector<std::unique_ptr<detail::PoolWorker>> workers_;
  std::vector<std::thread> threads_;

  GenerationBarrier start_;  // workers + the caller: a step (or the stop) begins
  GenerationBarrier phase_;  // workers: end of compute, end of each reduction round
  GenerationBarrier end_;    // workers + the caller: the slices' sums are complete

  // Written by the caller before start_, read by the workers after it.
  std::atomic<bool> stop_{false};
  const StepWork* work_ = nullptr;
  const float* weights_ = nullptr;
  const std::function<void(int)>* body_ = nullptr;  // set: run body_(id) instead of a step

  Slicing slicing_;
  StepSums sums_;

  std::mutex err_mu_;
  std::exception_ptr error_;
  std::atomic<bool> failed_{false};

  StepTiming timing_;
};

// kind "mutex" or "barrier"; throws ConfigError for another kind or workers < 1.
std::unique_ptr<Backend> make_pool_backend(const std::string& kind, const RunConfig& run,
                                           const WindowSampler& sampler, int workers);

}  // namespace cllm
