#pragma once
// An owner: the actor that holds one slice of a step's exact sum (src/exact_sum.hpp's Slicing)
// in the root's process. Spheres send it every shard's float gradient and it folds its slice;
// remote nodes' whole partial sums are merged into it by the coordinator; after the step, it runs
// the optimizer's work for its slice (block norms, AdamW) where the loop asks it to. Protocol:
// owner_actor (messages/). Its slice lives in the backend (`slot`), so the training loop reads the
// step's sums without a copy; the weights and AdamW moments live in the TrainState, so an owner
// that dies loses neither.
#include <cstddef>
#include <memory>
#include <vector>

#include <caf/all.hpp>

#include "messages/messages.hpp"
#include "src/params.hpp"

namespace cllm {

struct OwnerSetup {
  ParamLayout layout;
  int index = 0;                     // slice number
  size_t begin = 0, end = 0;         // its elements
  ExactGrad* slot = nullptr;         // where its sum lives (outlives the actor system)
  std::vector<int64_t> crash_steps;  // injected faults: crash on the first fold of these steps
};

// Spawns owner `setup.index`, linked to `parent` (its supervisor).
owner_actor spawn_owner(caf::local_actor* parent, std::shared_ptr<const OwnerSetup> setup);

}  // namespace cllm
