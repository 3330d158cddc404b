#pragma once
// Every type that crosses an actor boundary, its inspect(), its registration, and the sphere's
// protocol as a typed actor interface (a wrong message is a compile error).
//
// In-process the weights travel as one shared immutable buffer (WeightsRef), never copied per
// sphere; partial sums are moved up (a moved-into message is unique, so a handler taking it by
// non-const reference owns it without a copy).
#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "src/backend.hpp"
#include "src/checkpoint.hpp"
#include "src/exact_sum.hpp"
#include "src/topology.hpp"
#include "src/training.hpp"

// The shared weights buffer is an in-process reference: it cannot be serialised (remote
// subtrees receive the weights as raw bytes instead).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cllm::WeightsRef)
namespace cllm {
struct Assignment;
struct ShardSet;
}  // namespace cllm
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<const cllm::Assignment>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<const cllm::ShardSet>)
// In-process only, like the weights: a node's whole partial sum handed to the owners, and the
// optimizer's per-slice work handed to them.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<const cllm::ExactGrad>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<const std::function<void(int)>>)

namespace cllm {

using step_atom = caf::atom_constant<caf::atom("step")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using fold_atom = caf::atom_constant<caf::atom("fold")>;
using merge_atom = caf::atom_constant<caf::atom("merge")>;
using apply_atom = caf::atom_constant<caf::atom("apply")>;
using held_atom = caf::atom_constant<caf::atom("held")>;

using ExactGradRef = std::shared_ptr<const ExactGrad>;
using SliceBodyRef = std::shared_ptr<const std::function<void(int)>>;

// An owner (actors/owner.hpp) holds one slice of the step's exact sum. Per round (one attempt of
// one step, numbered by the coordinator; a newer round starts the slice afresh, an older one is
// ignored):
//   - fold: one shard's float gradient (whole vector, shared; read only in the handler) with its
//     loss and tokens, folded into the slice; a shard already folded in this round is skipped,
//     so a resent shard never counts twice. Answers the milliseconds the fold took (-1: stale).
//   - merge: a whole partial sum of the given shards (a remote node's), its slice added; skipped
//     when any of those shards was already folded. Answers as fold.
//   - held: how many shards of the round its slice holds (-1: it is at another round). The
//     coordinator asks before it answers a step: a dead owner's last answers may reach the
//     spheres before its exit message reaches the coordinator, so "every member answered" alone
//     does not mean every slice is whole.
//   - apply: runs body(slice index) (the optimizer's per-slice work); answers true.
using owner_actor =
    caf::typed_actor<caf::replies_to<fold_atom, uint64_t, StepWork, int32_t, WeightsRef, double,
                                     int64_t>::with<double>,
                     caf::replies_to<merge_atom, uint64_t, StepWork, std::vector<int32_t>,
                                     ExactGradRef>::with<double>,
                     caf::replies_to<held_atom, uint64_t>::with<int32_t>,
                     caf::replies_to<apply_atom, SliceBodyRef>::with<bool>>;

// The owners of a round, as the spheres that compute it see them.
struct OwnerSet {
  uint64_t round = 0;
  std::vector<owner_actor> owners;
};
using OwnerSetRef = std::shared_ptr<const OwnerSet>;

// The shards a subtree computes in one step, with their token windows when these were shipped
// (to a remote node, which has no corpus) rather than sampled where they are computed.
struct ShardSet {
  std::vector<int32_t> shards;
  std::vector<int32_t> tokens;  // empty, or per shard in order: micro_batch x (context + 1) ids

  // The windows of the shard at `position`, or null when they are sampled locally.
  const int32_t* tokens_of(size_t position, size_t per_shard) const {
    return tokens.empty() ? nullptr : tokens.data() + position * per_shard;
  }
  // The shards at `positions`, with their windows.
  ShardSet subset(const std::vector<size_t>& positions, size_t per_shard) const;
};
using ShardSetRef = std::shared_ptr<const ShardSet>;

// A subtree's shards and where in it they go: position i of `set` to the sphere plan->owner(i)
// of the subtree's topology. Built by the coordinator for the step's membership and shared,
// immutable, by every sphere of the subtree (in-process only). With `owners`, each sphere sends
// every shard's gradient to the owners and its partial sum up the tree stays empty; without
// (a remote node's tree), partial sums of the whole vector travel up.
struct Assignment {
  ShardSet set;
  std::shared_ptr<const ShardPlan> plan;
  OwnerSetRef owners;
};
using AssignmentRef = std::shared_ptr<const Assignment>;

// Control data that travels with a step's work.
struct StepCtl {
  int32_t delivery = 0;     // 0 = first delivery; > 0 = resent after a failure (no injections)
  int64_t deadline_ms = 0;  // base deadline D; a child h levels high gets D * (h + 1)
  // A remote node: 0 sends its partial sum up with the answer; otherwise the node keeps it, added
  // to what it holds under this key (a new key starts afresh), until the root asks for it (the
  // exchange between nodes, actors/coordinator.cpp).
  uint64_t hold_key = 0;
};

// Why a sphere gave up (its restart budget is spent), with what it had counted: the context of
// its exit reason (error category "sphere", code gave_up), and of the error that answers the
// step it was working on.
struct GiveUp {
  std::string cause;
  FaultCounts faults;
};

// Error codes of category "sphere".
enum class sphere_errc : uint8_t {
  crashed = 1,  // context: the exception's text (std::string)
  gave_up = 2,  // context: GiveUp
};
caf::error make_sphere_error(sphere_errc code, caf::message context);
// The error of an actor that an exception ended (code crashed): the exception's what(), or
// "unknown exception" for one that is no std::exception.
caf::error crash_error(const std::exception_ptr& ep);
// The text of a sphere's exit reason: an exception's what(), a give-up's cause, the line of a
// "node" error (messages/cluster.hpp), or CAF's text.
std::string exit_reason_text(caf::actor_system& sys, const caf::error& reason);
// The GiveUp carried by `e`, or null.
const GiveUp* as_give_up(const caf::error& e);

// The sphere's protocol: a step's work and its shards in, the subtree's partial sum out; a
// statistics request (collector, restarts as counted by the parent) makes every sphere of the
// subtree send its SphereStats to the collector, with the number of children it asked in turn.
using sphere_actor = caf::typed_actor<
    caf::replies_to<step_atom, StepWork, WeightsRef, AssignmentRef, StepCtl>::with<Partial>,
    caf::reacts_to<stats_atom, caf::actor, int64_t>>;

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, StepWork& x) {
  return f(caf::meta::type_name("cllm.step_work"), x.step, x.attempt, x.shards, x.grad_scale_exp);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ShardSet& x) {
  return f(caf::meta::type_name("cllm.shard_set"), x.shards, x.tokens);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, StepCtl& x) {
  return f(caf::meta::type_name("cllm.step_ctl"), x.delivery, x.deadline_ms, x.hold_key);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ExactGrad& x) {
  return f(caf::meta::type_name("cllm.exact_grad"), x.sum, x.max_abs, x.loss_fixed, x.tokens,
           x.shards, x.overflow, x.nonfinite);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, StepTiming& x) {
  return f(caf::meta::type_name("cllm.step_timing"), x.compute_ms, x.fold_ms, x.reduce_ms,
           x.wait_ms, x.network_ms, x.bytes_sent, x.bytes_received, x.spheres, x.nodes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NodeUsage& x) {
  return f(caf::meta::type_name("cllm.node_usage"), x.node, x.cpu_s, x.rss_mb);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, FaultEvent& x) {
  return f(caf::meta::type_name("cllm.fault_event"), x.kind, x.sphere, x.step, x.reason);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, FaultCounts& x) {
  return f(caf::meta::type_name("cllm.fault_counts"), x.restarts, x.deadline_kills,
           x.subtree_restarts, x.nodes_joined, x.nodes_left, x.nodes_lost, x.shards_redispatched,
           x.events);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Partial& x) {
  return f(caf::meta::type_name("cllm.partial"), x.grad, x.timing, x.faults, x.members.nodes,
           x.members.spheres);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GiveUp& x) {
  return f(caf::meta::type_name("cllm.give_up"), x.cause, x.faults);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, SphereStats& x) {
  return f(caf::meta::type_name("cllm.sphere_stats"), x.id, x.level, x.parent, x.group, x.shards,
           x.compute_ms, x.fold_ms, x.reduce_ms, x.wait_ms, x.restarts, x.known, x.node, x.host);
}

// Registers every message type and the error categories "sphere" and "node" (call in the
// actor_system_config's constructor).
void register_messages(caf::actor_system_config& cfg);

using checkpoint_atom = caf::atom_constant<caf::atom("ckpt")>;
using CheckpointRef = std::shared_ptr<const Checkpoint>;

}  // namespace cllm

// A snapshot handed to the checkpoint writer: in-process only, never copied.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cllm::CheckpointRef)
