#include "src/pool_backends.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "src/clock.hpp"
#include "src/topology.hpp"

namespace cllm {

namespace {

std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::bad_alloc&) {
    return "out of memory (std::bad_alloc)";
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

void check_workers(const char* kind, int workers) {
  if (workers < 1)
    throw ConfigError(fmt::format("the {} pool needs at least 1 worker (got {})", kind, workers));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// GenerationBarrier

GenerationBarrier::GenerationBarrier(int participants) : participants_(participants) {}

bool GenerationBarrier::arrive_and_wait() {
  std::unique_lock<std::mutex> lk(mu_);
  if (broken_) return false;
  const uint64_t gen = generation_;
  if (++arrived_ == participants_) {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
    return true;
  }
  cv_.notify_all();  // for wait_for_arrivals
  cv_.wait(lk, [&] { return generation_ != gen || broken_; });
  return generation_ != gen;
}

void GenerationBarrier::wait_for_arrivals(int n) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return arrived_ >= n || broken_; });
}

void GenerationBarrier::break_barrier() {
  std::lock_guard<std::mutex> lk(mu_);
  broken_ = true;
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// One worker thread's state. Written only by its thread during a step; read by the caller of
// run_step after the step's hand-off (a mutex or a barrier orders the accesses).

namespace detail {
struct PoolWorker {
  std::unique_ptr<ShardWorker> shard_worker;  // made on the first shard: idle threads hold no model
  ExactGrad acc;  // barrier: the thread's whole-vector sum (the mutex pool folds into slices)
  // This step.
  int64_t step_shards = 0;
  double step_compute = 0, step_fold = 0, step_reduce = 0, step_wait = 0;
  SteadyClock::time_point done_at;
  // Totals over the backend's life (for worker_stats).
  int64_t shards = 0;
  double compute_ms = 0, fold_ms = 0, reduce_ms = 0, wait_ms = 0;

  void begin_step() { step_shards = 0, step_compute = step_fold = step_reduce = step_wait = 0; }
  ShardWorker& worker(const RunConfig& run, const WindowSampler& sampler) {
    if (!shard_worker) shard_worker = std::make_unique<ShardWorker>(run, sampler);
    return *shard_worker;
  }
  // The shard's gradient only (the mutex pool folds it into every slice itself).
  void compute_gradient(const RunConfig& run, const WindowSampler& sampler, const float* weights,
                        const StepWork& work, int shard) {
    ShardWorker& w = worker(run, sampler);
    w.compute_gradient(weights, work, shard);
    ++step_shards;
    step_compute += w.last_compute_ms();
  }
  // The shard's gradient, folded into the thread's own sum.
  void compute(const RunConfig& run, const WindowSampler& sampler, const float* weights,
               const StepWork& work, int shard) {
    ShardWorker& w = worker(run, sampler);
    w.compute(weights, work, shard, acc);
    ++step_shards;
    step_compute += w.last_compute_ms();
    step_fold += w.last_fold_ms();
  }
  void end_step() {
    shards += step_shards;
    compute_ms += step_compute, fold_ms += step_fold;
    reduce_ms += step_reduce, wait_ms += step_wait;
  }
};
}  // namespace detail

namespace {

using detail::PoolWorker;

StepTiming sum_timing(const std::vector<std::unique_ptr<PoolWorker>>& workers) {
  StepTiming t;
  for (const auto& s : workers) {
    t.compute_ms += s->step_compute;
    t.fold_ms += s->step_fold;
    t.reduce_ms += s->step_reduce;
    t.wait_ms += s->step_wait;
    if (s->step_shards > 0) ++t.spheres;
  }
  return t;
}

std::vector<SphereStats> worker_stats(const std::vector<std::unique_ptr<PoolWorker>>& workers) {
  // Every thread is the top of a tree of its own (level 0, no parent) and nothing restarts.
  std::vector<SphereStats> out(workers.size());
  for (size_t i = 0; i < workers.size(); ++i) {
    const PoolWorker& s = *workers[i];
    SphereStats& o = out[i];
    o.id = int32_t(i), o.level = 0, o.parent = -1, o.group = int32_t(i) % kSymmetryGroups;
    o.shards = s.shards;
    o.compute_ms = s.compute_ms, o.fold_ms = s.fold_ms, o.reduce_ms = s.reduce_ms;
    o.wait_ms = s.wait_ms;
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// MutexBackend

MutexBackend::MutexBackend(const RunConfig& run, const WindowSampler& sampler, int workers)
    : run_(run),
      sampler_(sampler),
      layout_(run.model),
      spheres_(workers),
      slicing_(layout_.total(), std::max(1, workers)) {
  check_workers("mutex", workers);
  slice_mu_ = std::make_unique<std::mutex[]>(size_t(spheres_));
  sums_.resize(size_t(spheres_));
  for (int i = 0; i < spheres_; ++i) workers_.push_back(std::make_unique<PoolWorker>());
  try {
    threads_.reserve(size_t(spheres_));
    for (int i = 0; i < spheres_; ++i) threads_.emplace_back([this, i] { worker_main(i); });
  } catch (...) {
    stop_threads();  // the threads that did start
    throw;
  }
}

MutexBackend::~MutexBackend() {
  stop_threads();
}

void MutexBackend::stop_threads() {
  {
    std::lock_guard<std::mutex> lk(ctl_mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void MutexBackend::worker_main(int id) {
  PoolWorker& me = *workers_[size_t(id)];
  uint64_t seen = 0;
  for (;;) {
    const StepWork* work = nullptr;
    const float* weights = nullptr;
    const std::function<void(int)>* body = nullptr;
    {
      std::unique_lock<std::mutex> lk(ctl_mu_);
      start_cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      work = work_, weights = weights_, body = body_;
    }
    std::exception_ptr err;
    try {
      if (body) {
        (*body)(id);  // this worker's slice
      } else {
        for (int s = id; s < work->shards && !failed_.load(std::memory_order_relaxed);
             s += spheres_) {
          me.compute_gradient(run_, sampler_, weights, *work, s);
          for (int j = 0; j < spheres_; ++j) {
            const size_t k = size_t((id + j) % spheres_);
            const auto t0 = SteadyClock::now();
            std::lock_guard<std::mutex> lk(slice_mu_[k]);
            const auto t1 = SteadyClock::now();
            me.shard_worker->fold_into(*work, sums_[k]);
            me.step_reduce += ms_between(t0, t1);
            me.step_fold += ms_between(t1, SteadyClock::now());
          }
        }
      }
    } catch (...) {
      err = std::current_exception();
      failed_ = true;
    }
    std::lock_guard<std::mutex> lk(ctl_mu_);
    me.done_at = SteadyClock::now();
    if (err && !error_) error_ = err;
    if (--remaining_ == 0) done_cv_.notify_one();
  }
}

std::exception_ptr MutexBackend::run_generation(const StepWork* work, const float* weights,
                                                const std::function<void(int)>* body) {
  {
    std::lock_guard<std::mutex> lk(ctl_mu_);
    work_ = work, weights_ = weights, body_ = body;
    error_ = nullptr;
    failed_ = false;
    remaining_ = spheres_;
    ++generation_;
  }
  start_cv_.notify_all();
  std::unique_lock<std::mutex> lk(ctl_mu_);
  done_cv_.wait(lk, [&] { return remaining_ == 0; });
  work_ = nullptr, weights_ = nullptr, body_ = nullptr;
  return error_;
}

const StepSums& MutexBackend::run_step(const StepWork& work, const WeightsRef& weights) {
  for (int k = 0; k < spheres_; ++k)
    sums_[size_t(k)].reset(layout_, slicing_.begin(k), slicing_.end(k));
  for (auto& s : workers_) s->begin_step();
  const std::exception_ptr err = run_generation(&work, weights->data(), nullptr);
  const SteadyClock::time_point end = SteadyClock::now();
  for (auto& s : workers_) {
    s->step_wait = ms_between(s->done_at, end);  // idle until the slowest thread is done
    s->end_step();
  }
  timing_ = sum_timing(workers_);
  if (err)
    throw BackendFailure(
        fmt::format("a mutex-pool worker failed at step {}: {}", work.step, describe(err)));
  return sums_;
}

void MutexBackend::run_slices(int n, const std::function<void(int)>& body) {
  if (n != spheres_) return Backend::run_slices(n, body);
  if (const std::exception_ptr err = run_generation(nullptr, nullptr, &body))
    std::rethrow_exception(err);
}

std::vector<SphereStats> MutexBackend::sphere_stats() {
  return worker_stats(workers_);
}

// ---------------------------------------------------------------------------------------------
// BarrierBackend

BarrierBackend::BarrierBackend(const RunConfig& run, const WindowSampler& sampler, int workers)
    : run_(run),
      sampler_(sampler),
      layout_(run.model),
      spheres_(workers),
      start_(workers + 1),
      phase_(workers),
      end_(workers + 1),
      slicing_(layout_.total(), std::max(1, workers)) {
  check_workers("barrier", workers);
  sums_.resize(size_t(spheres_));
  for (int i = 0; i < spheres_; ++i) workers_.push_back(std::make_unique<PoolWorker>());
  try {
    threads_.reserve(size_t(spheres_));
    for (int i = 0; i < spheres_; ++i) threads_.emplace_back([this, i] { worker_main(i); });
  } catch (...) {
    // Fewer threads than participants: the barriers can never complete. Break them so that the
    // threads that did start leave, then join them.
    stop_ = true;
    start_.break_barrier(), phase_.break_barrier(), end_.break_barrier();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    throw;
  }
}

BarrierBackend::~BarrierBackend() {
  // Between steps every worker waits at start_; our arrival releases them and they see stop_.
  stop_ = true;
  start_.arrive_and_wait();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void BarrierBackend::record_error(std::exception_ptr e) {
  std::lock_guard<std::mutex> lk(err_mu_);
  if (!error_) error_ = e;
  failed_ = true;
}

void BarrierBackend::worker_main(int id) {
  PoolWorker& me = *workers_[size_t(id)];
  for (;;) {
    if (!start_.arrive_and_wait() || stop_) return;
    if (body_) {  // this worker's slice
      try {
        (*body_)(id);
      } catch (...) {
        record_error(std::current_exception());
      }
      if (!end_.arrive_and_wait()) return;
      continue;
    }
    const StepWork& work = *work_;
    // Compute phase: this thread's shards into its own accumulator, no lock.
    try {
      if (id < work.shards) {
        me.acc.reset(layout_);
        for (int s = id; s < work.shards && !failed_.load(std::memory_order_relaxed); s += spheres_)
          me.compute(run_, sampler_, weights_, work, s);
      } else {
        me.acc = ExactGrad{};  // nothing to contribute (merge_range() skips an empty sum)
      }
    } catch (...) {
      record_error(std::current_exception());
    }
    const auto t0 = SteadyClock::now();
    if (!phase_.arrive_and_wait()) return;
    const auto t1 = SteadyClock::now();
    me.step_wait = ms_between(t0, t1);
    // Reduce-scatter: this thread's slice of every accumulator, in thread order, all threads at
    // once. failed_ is read after a barrier, so every thread sees the same value.
    if (!failed_) {
      try {
        for (const auto& w : workers_) sums_[size_t(id)].merge_range(w->acc);
      } catch (...) {
        record_error(std::current_exception());
      }
    }
    me.step_reduce = ms_between(t1, SteadyClock::now());
    if (!end_.arrive_and_wait()) return;
  }
}

const StepSums& BarrierBackend::run_step(const StepWork& work, const WeightsRef& weights) {
  for (int k = 0; k < spheres_; ++k)
    sums_[size_t(k)].reset(layout_, slicing_.begin(k), slicing_.end(k));
  for (auto& s : workers_) s->begin_step();
  work_ = &work;
  weights_ = weights->data();
  {
    std::lock_guard<std::mutex> lk(err_mu_);
    error_ = nullptr;
  }
  failed_ = false;
  start_.arrive_and_wait();  // workers compute, reduce-scatter...
  end_.arrive_and_wait();    // ...and every slice is complete
  work_ = nullptr, weights_ = nullptr;
  for (auto& s : workers_) s->end_step();
  timing_ = sum_timing(workers_);
  std::exception_ptr err;
  {
    std::lock_guard<std::mutex> lk(err_mu_);
    err = error_;
  }
  if (err)
    throw BackendFailure(
        fmt::format("a barrier-pool worker failed at step {}: {}", work.step, describe(err)));
  return sums_;
}

void BarrierBackend::run_slices(int n, const std::function<void(int)>& body) {
  if (n != spheres_) return Backend::run_slices(n, body);
  {
    std::lock_guard<std::mutex> lk(err_mu_);
    error_ = nullptr;
  }
  body_ = &body;
  start_.arrive_and_wait();
  end_.arrive_and_wait();
  body_ = nullptr;
  std::exception_ptr err;
  {
    std::lock_guard<std::mutex> lk(err_mu_);
    err = error_;
  }
  if (err) std::rethrow_exception(err);
}

std::vector<SphereStats> BarrierBackend::sphere_stats() {
  return worker_stats(workers_);
}

// ---------------------------------------------------------------------------------------------

std::unique_ptr<Backend> make_pool_backend(const std::string& kind, const RunConfig& run,
                                           const WindowSampler& sampler, int workers) {
  if (kind != "mutex" && kind != "barrier")
    throw ConfigError(
        fmt::format("unknown thread-pool backend '{}' (expected mutex or barrier)", kind));
  check_workers(kind.c_str(), workers);
  if (kind == "mutex") return std::make_unique<MutexBackend>(run, sampler, workers);
  return std::make_unique<BarrierBackend>(run, sampler, workers);
}

}  // namespace cllm
