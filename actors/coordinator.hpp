#pragma once
// The coordinator: the actor above sphere 0, between the training loop and the spheres. Each
// step it deals the shards over its members (the local subtree under sphere 0, and remote nodes
// once they join) and answers when every shard is in the owners' slices (actors/owner.hpp): local
// spheres send their gradients to the owners themselves, a node's whole partial sum is merged
// into them from here. Nothing is summed serially here. It supervises sphere 0 with the root
// restart budget (--root-max-restarts); a member that fails has its shards dealt again to the
// others inside the same step (placement never changes the result: the sum is exact, and an owner
// folds a shard once). It also supervises the owners: one that dies ends the run (BackendFailure)
// with the state of the last step kept, since the weights and moments are the TrainState's.
#include <memory>

#include <caf/all.hpp>

#include "actors/sphere.hpp"
#include "messages/cluster.hpp"
#include "src/cluster_timing.hpp"

namespace cllm {

struct CoordinatorSetup {
  RunConfig run;
  std::shared_ptr<const TreeSetup> local;  // null: no local spheres (remote nodes do the work)
  int local_capacity = 1;  // the local subtree's share against a node's (its threads)
  double orphan_timeout_s =
      kDefaultJoinTimeoutS;  // a step with no member left waits this long for a node
  StepSums* sums = nullptr;  // the owners' slices, one per owner (outlives the system)
  // Nodes exchange their partial sums among themselves (each totals one slice, which it sends
  // here) and spread the weights among themselves, instead of each sending its whole sum here and
  // receiving the whole weights from here ("mesh"; false: "star").
  bool mesh = true;
};

// The coordinator's other face, for the training loop: run body(k) on owner k for every owner,
// answered when all have run (the backend's run_slices).
using slice_runner_actor = caf::typed_actor<caf::replies_to<apply_atom, SliceBodyRef>::with<bool>>;

// One coordinator, by both of its typed faces (no cast between them is needed later).
struct CoordinatorHandles {
  coordinator_actor steps;
  slice_runner_actor slices;
};

CoordinatorHandles spawn_coordinator(caf::actor_system& sys, CoordinatorSetup setup);

}  // namespace cllm
