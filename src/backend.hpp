#pragma once
// What a synchronisation backend provides: compute every shard of a step and hand back the
// exact sums, as the slices of its owners (src/exact_sum.hpp's Slicing), and run the optimizer's
// per-slice work on those owners. The actor tree, the mutex pool and the barrier pool implement
// this; everything else (optimizer, evaluation, metrics, checkpoints) is the shared training loop.
// Backends report in plain structs; the run folder turns them into JSON, once.
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/aligned.hpp"
#include "src/exact_sum.hpp"
#include "src/topology.hpp"
#include "src/training.hpp"

namespace cllm {

using WeightsRef = std::shared_ptr<const AlignedVector<float>>;

// A remote node's process as it answered its last request of a step (cluster runs).
struct NodeUsage {
  int32_t node = 0;   // the node's index (as in spheres.json and its fault events)
  double cpu_s = 0;   // CPU time so far (user + system, all threads)
  double rss_mb = 0;  // resident memory
};

// Where the time of one step went, summed over spheres (milliseconds).
struct StepTiming {
  double compute_ms = 0;  // forward + backward
  double fold_ms = 0;     // shard gradient -> exact sum
  double reduce_ms = 0;   // merging partial sums (and holding a lock, for the mutex pool)
  double wait_ms = 0;     // done with its own shards, waiting for its children's sums
  double network_ms = 0;  // waiting on remote nodes beyond their own step time
  // The optimizer's per-slice work (block norms, AdamW), summed over the slices: each owner runs
  // its own at once, so it is parallel work, not the step's serial part.
  double optimizer_ms = 0;
  int64_t bytes_sent = 0, bytes_received = 0;  // to and from remote nodes
  int spheres = 0;                             // spheres that computed shards
  std::vector<NodeUsage> nodes;                // one per remote node that answered, by index

  StepTiming& operator+=(const StepTiming& o) {
    compute_ms += o.compute_ms, fold_ms += o.fold_ms, reduce_ms += o.reduce_ms;
    wait_ms += o.wait_ms, network_ms += o.network_ms, spheres += o.spheres;
    optimizer_ms += o.optimizer_ms;
    bytes_sent += o.bytes_sent, bytes_received += o.bytes_received;
    for (const NodeUsage& u : o.nodes) {  // a node that answered twice: its later figures
      auto it = nodes.begin();
      while (it != nodes.end() && it->node != u.node) ++it;
      if (it == nodes.end())
        nodes.push_back(u);
      else
        *it = u;
    }
    return *this;
  }
};

// One failure a supervisor handled, or a change of the cluster's membership.
struct FaultEvent {
  enum Kind : int32_t {
    crashed = 0,
    missed_deadline = 1,
    gave_up = 2,
    node_joined = 3,
    node_left = 4,
    node_lost = 5,
    owner_lost = 6,  // an owner of the step's sums crashed: respawned, the round computed again
    exchange_failed = 7,  // nodes could not exchange their sums: each sent its whole sum instead
  };
  int32_t kind = crashed;
  int32_t sphere = 0;  // the sphere that failed, the node's index, or the owner's
  int64_t step = 0;    // 0-based step it happened in (-1: between steps)
  std::string reason;  // what it died of ("injected crash", an exception's text, a node's host)
};

// Fault counters of a subtree; they travel up with the partial sums, so that they survive the
// restart of any sphere that counted them.
struct FaultCounts {
  int64_t restarts = 0;          // spheres respawned after a crash or a missed deadline
  int64_t deadline_kills = 0;    // spheres killed for missing their deadline
  int64_t subtree_restarts = 0;  // spheres respawned after giving up (restart intensity)
  int64_t nodes_joined = 0, nodes_left = 0, nodes_lost = 0;
  int64_t shards_redispatched = 0;  // shards of lost nodes dealt again within their step
  std::vector<FaultEvent> events;

  FaultCounts& operator+=(const FaultCounts& o) {
    restarts += o.restarts, deadline_kills += o.deadline_kills;
    subtree_restarts += o.subtree_restarts;
    nodes_joined += o.nodes_joined, nodes_left += o.nodes_left, nodes_lost += o.nodes_lost;
    shards_redispatched += o.shards_redispatched;
    events.insert(events.end(), o.events.begin(), o.events.end());
    return *this;
  }
  bool any() const { return !events.empty() || restarts + deadline_kills + subtree_restarts > 0; }
};

// Who computed a step: remote nodes, and spheres in all (set by the coordinator).
struct Membership {
  int32_t nodes = 0, spheres = 0;
};

// The reply of a subtree to a step: its exact partial sum, timings and fault counters.
struct Partial {
  ExactGrad grad;
  StepTiming timing;
  FaultCounts faults;
  Membership members;

  // Adds `p` (consumed) into this one; returns the milliseconds the merge took, which are also
  // counted as reduce time.
  double merge(Partial& p);
};

// Totals of one sphere (a tree actor or a pool thread) over the run, for spheres.json.
struct SphereStats {
  int32_t id = 0, level = 0, parent = -1, group = 0;
  int64_t shards = 0;
  double compute_ms = 0, fold_ms = 0, reduce_ms = 0, wait_ms = 0;
  int64_t restarts = 0;  // times this sphere was respawned by its current parent
  bool known = true;     // false: lost with a tree that gave up (only the place in the tree)
  int32_t node = -1;     // the remote node it runs on (-1: the root's process)
  std::string host;      // that node's host

  // The report of the sphere at `pos` with only its place in the tree filled in (what is known
  // without asking it).
  static SphereStats placed(const SphereInfo& pos) {
    SphereStats s;
    s.id = pos.id, s.level = pos.level, s.parent = pos.parent, s.group = pos.group;
    return s;
  }
  // A report that stands for no sphere (id -1): a stats collector only counts it.
  static SphereStats count_only() {
    SphereStats s;
    s.id = -1;
    return s;
  }
};

// Raised by a backend when it cannot finish a step (e.g. the restart budget is exhausted). The
// step is not applied; `faults` holds what was counted in it.
struct BackendFailure : std::runtime_error {
  BackendFailure(const std::string& what, FaultCounts f = {})
      : std::runtime_error(what), faults(std::move(f)) {}
  FaultCounts faults;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int spheres() const = 0;
  // Computes every shard of `work` with `weights`; returns the exact sums of all shards, one
  // slice per owner (valid until the next run_step).
  virtual const StepSums& run_step(const StepWork& work, const WeightsRef& weights) = 0;
  // Runs body(k) for every slice k of the last run_step's sums, each where slice k lives, and
  // returns when all have run (TrainState::apply's SliceRunner). Default: one after another here.
  virtual void run_slices(int n, const std::function<void(int)>& body) {
    for (int k = 0; k < n; ++k) body(k);
  }
  // The last run_step's sums were consumed (applied or refused): a backend may free them until its
  // next run_step (so that they do not add to what the rest of the step, an evaluation or a
  // checkpoint, needs).
  virtual void release_sums() {}
  SliceRunner slice_runner() {
    return [this](int n, const std::function<void(int)>& body) { run_slices(n, body); };
  }
  virtual StepTiming last_timing() const = 0;
  // The faults handled during the last step (none for a backend that cannot restart spheres).
  virtual FaultCounts last_faults() const { return {}; }
  // Who computed the last step (no remote nodes and spheres() spheres, unless a cluster).
  virtual Membership last_membership() const { return {0, spheres()}; }
  // Per-sphere totals, by id.
  virtual std::vector<SphereStats> sphere_stats() = 0;
};

}  // namespace cllm
