#pragma once
// The actor-tree backend: a CAF actor system holding the sphere tree. The session's loop (the
// root) hands each step to the supervisor above sphere 0 and blocks until the exact total of
// the whole tree comes back.
#include <deque>
#include <memory>

#include <caf/all.hpp>

#include "actors/sphere.hpp"
#include "src/backend.hpp"

namespace cllm {

struct TreeOptions {
  int spheres = 1;
  int fanout = 12;
  Placement placement = Placement::bfs;
  int threads = 0;  // CAF scheduler threads; 0 = detected cores
  FaultPlan faults;
  SupervisionPolicy policy;
};

class TreeBackend final : public Backend {
 public:
  TreeBackend(const RunConfig& run, const WindowSampler& sampler, const TreeOptions& opt);
  ~TreeBackend() override;

  std::string name() const override { return "actors"; }
  int workers() const override { return setup_->topology.size(); }
  ExactGrad run_step(const StepWork& work, const WeightsRef& weights) override;
  StepTiming last_timing() const override { return timing_; }
  nlohmann::json worker_stats() override;
  nlohmann::json fault_counters() override;

 private:
  struct Config : caf::actor_system_config {
    explicit Config(int threads);
  };
  int64_t deadline_ms() const;

  std::shared_ptr<const TreeSetup> setup_;
  int threads_;
  std::unique_ptr<Config> cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  caf::actor root_;
  // One blocking actor for the session's requests, alive as long as the tree (creating one per
  // step costs a registration each time). Destroyed before the system shuts down.
  std::unique_ptr<caf::scoped_actor> self_;
  StepTiming timing_;
  FaultCounts faults_;
  std::deque<double> recent_step_ms_;
};

}  // namespace cllm
