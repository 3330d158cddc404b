#pragma once
// The coordinator: the root of the sphere tree, between the training loop and the spheres. Each
// step it deals the shards over its members (the local subtree under sphere 0, and remote nodes
// once they join), merges their exact partial sums and answers with the step's total. It
// supervises sphere 0 with the root's restart budget; a member that fails has its shards dealt
// again to the others inside the same step (placement never changes the result: the sum is
// exact).
#include <memory>

#include <caf/all.hpp>

#include "actors/sphere.hpp"
#include "messages/cluster.hpp"

namespace cllm {

struct CoordinatorSetup {
  RunConfig run;
  std::shared_ptr<const TreeSetup> local;  // null: no local spheres (remote nodes do the work)
  int local_capacity = 1;        // the local subtree's share against a node's (its threads)
  double orphan_timeout_s = 60;  // a step with no member left waits this long for a node
};

coordinator_actor spawn_coordinator(caf::actor_system& sys, CoordinatorSetup setup);

}  // namespace cllm
