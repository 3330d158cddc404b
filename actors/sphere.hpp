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
  Placement placement = Placement::bfs;
  const WindowSampler* sampler;  // outlives the actor system
  FaultPlan faults;
  SupervisionPolicy policy;
};

// Spawns sphere `id` with its whole subtree, linked to `parent` (its supervisor).
sphere_actor spawn_sphere(caf::local_actor* parent, std::shared_ptr<const TreeSetup> setup, int id);

}  // namespace cllm
