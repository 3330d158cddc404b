#pragma once
// The actor-tree backend: a CAF actor system holding the sphere tree under its coordinator. The
// training loop (in the root process) hands each step to the coordinator and blocks until the exact
// total comes back. With `cluster.listen`, remote nodes (cllm node) may join over the network and
// take a share of every step.
#include <iosfwd>
#include <memory>
#include <string>

#include <caf/all.hpp>

#include "actors/cluster_transport.hpp"
#include "actors/coordinator.hpp"
#include "actors/sphere.hpp"
#include "messages/cluster.hpp"
#include "src/backend.hpp"
#include "src/cluster_timing.hpp"

namespace cllm {

// How a root serves remote nodes.
struct ClusterOptions {
  bool listen = false;
  std::string host = "127.0.0.1";
  uint16_t port = 0;                       // 0: the system picks one (listening_port() says which)
  std::string key;                         // the cluster key; required off loopback without TLS
  TlsFiles tls;                            // TLS with mutual certificate checks; none: plain TCP
  int heartbeat_ms = kDefaultHeartbeatMs;  // CAF heartbeats, so a frozen peer is noticed ...
  double connection_timeout_s = kDefaultConnectionTimeoutS;  // ... after this long without one
  double orphan_timeout_s =
      kDefaultJoinTimeoutS;  // a step with no member left waits this long for a node
  std::string tokenizer_kind = "byte", tokenizer_data;  // for the nodes' fingerprints
  bool mesh = true;  // nodes exchange sums and weights among themselves (CoordinatorSetup::mesh)
};

struct TreeOptions {
  int spheres = 1;  // local spheres; 0 (with cluster.listen) for a pure coordinator
  int fanout = 12;
  Placement placement = Placement::bfs;
  int threads = 1;  // CAF scheduler threads (the command line defaults them to the cores)
  int owners = 0;   // owners of the sums' slices (actors/owner.hpp); 0: one per thread
  FaultPlan faults;
  SupervisionPolicy policy;
  ClusterOptions cluster;
};

class TreeBackend final : public Backend {
 public:
  TreeBackend(const RunConfig& run, const WindowSampler& sampler, const TreeOptions& opt);
  ~TreeBackend() override;

  std::string name() const override { return "actors"; }
  int spheres() const override { return membership_.spheres; }
  const StepSums& run_step(const StepWork& work, const WeightsRef& weights) override;
  // On the owners, at once (through the coordinator).
  void run_slices(int n, const std::function<void(int)>& body) override;
  // The owners' slices are freed between steps (each owner allocates its slice again when its
  // next round begins, after the next run_step has started).
  void release_sums() override;
  StepTiming last_timing() const override { return timing_; }
  FaultCounts last_faults() const override { return faults_; }
  Membership last_membership() const override { return membership_; }
  std::vector<SphereStats> sphere_stats() override;

  // The port nodes dial (after cluster.listen).
  uint16_t listening_port() const { return port_; }
  // Blocks until `nodes` nodes have joined (progress on `out` every few seconds); ConfigError
  // past `timeout_s`.
  void wait_for_nodes(int nodes, double timeout_s, std::ostream& out);

 private:
  struct Config : caf::actor_system_config {
    Config(int threads, const ClusterOptions& cluster);
  };
  Membership query_membership();
  void listen(const RunConfig& run, const WindowSampler& sampler, const ClusterOptions& c);

  std::shared_ptr<const TreeSetup> setup_;  // null: no local spheres
  int threads_;
  StepDeadline deadline_;
  std::unique_ptr<Config> cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  coordinator_actor coordinator_;
  slice_runner_actor slice_runner_;  // the same actor, its face for the owners' work
  gateway_actor gateway_;
  uint16_t port_ = 0;
  ShardSetRef all_shards_;  // every shard of a step, sampled where it is computed
  // One blocking actor for the loop's requests, alive as long as the tree (creating one per
  // step costs a registration each time). Destroyed before the system shuts down.
  std::unique_ptr<caf::scoped_actor> self_;
  StepSums sums_;  // slice k: owner k's sum (written by the owner during a step)
  StepTiming timing_;
  FaultCounts faults_;
  Membership membership_;
  bool gave_up_ = false;
};

}  // namespace cllm
