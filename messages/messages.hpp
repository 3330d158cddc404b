#pragma once
// Every type that crosses an actor boundary, its inspect() and its registration.
//
// In-process the weights travel as one shared immutable buffer (WeightsRef), never copied per
// sphere; partial sums are moved up (a moved-into message is unique, so a handler taking it by
// non-const reference owns it without a copy).
#include <cstdint>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "src/backend.hpp"
#include "src/checkpoint.hpp"
#include "src/exact_sum.hpp"
#include "src/training.hpp"

namespace cllm {

using step_atom = caf::atom_constant<caf::atom("step")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;

// Control data that travels with a step's work.
struct StepCtl {
  int32_t delivery = 0;     // 0 = first delivery; > 0 = resent after a failure (no injections)
  int64_t deadline_ms = 0;  // base deadline D; a parent at level l waits D * (levels - 1 - l)
};

// Fault counters of a subtree during one step; they travel up with the partial sum so that
// they survive the restart of any sphere that counted them.
struct FaultCounts {
  int64_t restarts = 0;          // spheres respawned after a crash or kill
  int64_t deadline_kills = 0;    // spheres killed for missing their deadline
  int64_t subtree_restarts = 0;  // spheres respawned after giving up (restart intensity)

  FaultCounts& operator+=(const FaultCounts& o) {
    restarts += o.restarts, deadline_kills += o.deadline_kills;
    subtree_restarts += o.subtree_restarts;
    return *this;
  }
};

// The reply of a subtree to a step: its exact partial sum, timings and fault counters.
struct Partial {
  ExactGrad grad;
  StepTiming timing;
  FaultCounts faults;
};

// Per-sphere statistics for spheres.json, gathered up the tree at the end of a run.
struct SphereStats {
  int32_t id = 0, level = 0, parent = -1, group = 0;
  int64_t shards = 0;
  double compute_ms = 0, fold_ms = 0, reduce_ms = 0, wait_ms = 0;
  int64_t restarts = 0;  // times this sphere was respawned by its current parent
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, StepWork& x) {
  return f(caf::meta::type_name("cllm.step_work"), x.step, x.attempt, x.shards, x.exps);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, StepCtl& x) {
  return f(caf::meta::type_name("cllm.step_ctl"), x.delivery, x.deadline_ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ExactGrad& x) {
  return f(caf::meta::type_name("cllm.exact_grad"), x.sum, x.max_abs, x.loss_fixed, x.tokens,
           x.shards, x.overflow, x.nonfinite);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, StepTiming& x) {
  return f(caf::meta::type_name("cllm.step_timing"), x.compute_ms, x.fold_ms, x.reduce_ms,
           x.workers);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, FaultCounts& x) {
  return f(caf::meta::type_name("cllm.fault_counts"), x.restarts, x.deadline_kills,
           x.subtree_restarts);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Partial& x) {
  return f(caf::meta::type_name("cllm.partial"), x.grad, x.timing, x.faults);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, SphereStats& x) {
  return f(caf::meta::type_name("cllm.sphere_stats"), x.id, x.level, x.parent, x.group, x.shards,
           x.compute_ms, x.fold_ms, x.reduce_ms, x.wait_ms, x.restarts);
}

// Registers every message type (call in the actor_system_config's constructor).
void register_messages(caf::actor_system_config& cfg);

}  // namespace cllm

// The shared weights buffer is an in-process reference: it cannot be serialised (remote
// subtrees would receive the weights as raw bytes instead).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cllm::WeightsRef)

namespace cllm {
using checkpoint_atom = caf::atom_constant<caf::atom("ckpt")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using CheckpointRef = std::shared_ptr<const Checkpoint>;
}  // namespace cllm
// A snapshot handed to the checkpoint writer: in-process only, never copied.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cllm::CheckpointRef)
