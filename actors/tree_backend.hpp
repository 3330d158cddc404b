#pragma once
// The actor-tree backend: a CAF actor system holding the sphere tree. The training loop (the
// root) hands each step to the coordinator above sphere 0 and blocks until the exact total of
// the whole tree comes back.
#include <memory>

#include <caf/all.hpp>

#include "actors/sphere.hpp"
#include "messages/cluster.hpp"
#include "src/backend.hpp"

namespace cllm {

struct TreeOptions {
  int spheres = 1;
  int fanout = 12;
  Placement placement = Placement::bfs;
  int threads = 1;  // CAF scheduler threads (the command line defaults them to the cores)
  FaultPlan faults;
  SupervisionPolicy policy;
};

class TreeBackend final : public Backend {
 public:
  TreeBackend(const RunConfig& run, const WindowSampler& sampler, const TreeOptions& opt);
  ~TreeBackend() override;

  std::string name() const override { return "actors"; }
  int spheres() const override { return setup_->topology.size(); }
  ExactGrad run_step(const StepWork& work, const WeightsRef& weights) override;
  StepTiming last_timing() const override { return timing_; }
  FaultCounts last_faults() const override { return faults_; }
  std::vector<SphereStats> sphere_stats() override;

 private:
  struct Config : caf::actor_system_config {
    explicit Config(int threads);
  };

  std::shared_ptr<const TreeSetup> setup_;
  int threads_;
  StepDeadline deadline_;
  std::unique_ptr<Config> cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  coordinator_actor root_;
  ShardSetRef all_shards_;  // every shard of a step, sampled where it is computed
  // One blocking actor for the loop's requests, alive as long as the tree (creating one per
  // step costs a registration each time). Destroyed before the system shuts down.
  std::unique_ptr<caf::scoped_actor> self_;
  StepTiming timing_;
  FaultCounts faults_;
  bool gave_up_ = false;
};

}  // namespace cllm
