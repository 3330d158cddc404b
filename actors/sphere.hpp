#pragma once
// A sphere: one CAF actor of the tree, speaking the sphere_actor protocol (messages/). It
// receives a step's work from its parent, passes it on to the children whose subtrees have
// shards, computes its own shards, folds its children's exact partial sums into its own and
// answers its parent with one message.
//
// It also supervises its children (OTP style): children are linked and their exits trapped; a
// child that crashes or misses its deadline is respawned in place and its work is sent again;
// the decision and the restart budget are src/supervision.hpp's. Past the budget the sphere gives
// up, which takes its subtree down and lets its own parent restart the whole subtree.
#include <memory>

#include <caf/all.hpp>

#include "messages/messages.hpp"
#include "src/faults.hpp"
#include "src/sampler.hpp"
#include "src/supervision.hpp"
#include "src/topology.hpp"
#include "src/training.hpp"

namespace cllm {

// Immutable setup shared by every sphere of one tree.
struct TreeSetup {
  RunConfig run;
  Topology topology;
  ShardPlan plan;  // which sphere computes which shard (the number of shards is fixed per run)
  const WindowSampler* sampler;  // outlives the actor system
  FaultPlan faults;
  SupervisionPolicy policy;
};

// The id of the supervisor above sphere 0: it computes nothing and supervises sphere 0 with the
// root's restart budget.
constexpr int kSupervisorId = -1;

// Spawns sphere `id` (or the supervisor) with its whole subtree.
sphere_actor spawn_sphere(caf::actor_system& sys, std::shared_ptr<const TreeSetup> setup, int id);

}  // namespace cllm
