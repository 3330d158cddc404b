#include "actors/tree_backend.hpp"

#include "actors/coordinator.hpp"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

namespace cllm {

namespace {
// A pessimistic duration of one step (1 GFLOP/s per thread), so that a big first step is never
// killed as a hang before any step time is known.
double first_step_estimate_s(const RunConfig& r, int threads) {
  const double flops = 6.0 * double(ParamLayout(r.model).num_parameters()) *
                       double(r.batch.tokens_per_step()) * 1.5;  // + attention, generously
  return flops / (1e9 * double(threads));
}

std::shared_ptr<const TreeSetup> make_setup(const RunConfig& run, const WindowSampler& sampler,
                                            const TreeOptions& opt) {
  opt.policy.validate();
  Topology topology(opt.spheres, opt.fanout);
  const ShardPlan plan(topology, run.batch.shards(), opt.placement);  // with no remote nodes
  for (const auto& inj : opt.faults.injections) {
    if (inj.sphere >= opt.spheres)
      throw ConfigError(fmt::format("--inject names sphere {} but the tree has {} spheres",
                                    inj.sphere, opt.spheres));
    if (plan.subtree(inj.sphere) == 0)
      throw ConfigError(fmt::format(
          "--inject names sphere {}, which never receives work ({} shards per step go to {} "
          "spheres; see --print-topology); pick one of those or an ancestor",
          inj.sphere, run.batch.shards(), plan.computing_spheres()));
  }
  return std::make_shared<const TreeSetup>(
      TreeSetup{run, std::move(topology), opt.placement, &sampler, opt.faults, opt.policy});
}
}  // namespace

TreeBackend::Config::Config(int threads) {
  register_messages(*this);
  set("scheduler.max-threads", threads);
  // A step's work reaches a sibling worker by stealing. CAF's defaults let an idle worker try
  // only every 5th poll with 50 us sleeps (then 10 ms sleeps once relaxed), which delayed the
  // start of sphere 1's work by 0.3-0.5 ms each step (measured). Poll more eagerly.
  set("work-stealing.moderate-steal-interval", 1);
  set("work-stealing.moderate-sleep-duration", caf::timespan{std::chrono::microseconds(20)});
  set("work-stealing.relaxed-sleep-duration", caf::timespan{std::chrono::microseconds(200)});
}

TreeBackend::TreeBackend(const RunConfig& run, const WindowSampler& sampler, const TreeOptions& opt)
    : setup_(make_setup(run, sampler, opt)),
      threads_(std::max(1, opt.threads)),
      deadline_(opt.policy, first_step_estimate_s(run, threads_)) {
  cfg_ = std::make_unique<Config>(threads_);
  sys_ = std::make_unique<caf::actor_system>(*cfg_);
  CoordinatorSetup cs;
  cs.run = run, cs.local = setup_, cs.local_capacity = std::min(opt.spheres, threads_);
  root_ = spawn_coordinator(*sys_, std::move(cs));
  auto all = std::make_shared<ShardSet>();
  for (int32_t s = 0; s < run.batch.shards(); ++s) all->shards.push_back(s);
  all_shards_ = std::move(all);
  self_ = std::make_unique<caf::scoped_actor>(*sys_);
}

TreeBackend::~TreeBackend() {
  self_.reset();  // a live scoped_actor would block await_all_actors_done()
  // kill cannot be trapped; the links take the whole tree down with the coordinator.
  caf::anon_send_exit(root_, caf::exit_reason::kill);
  root_ = nullptr;
  sys_->await_all_actors_done();
  sys_.reset();
}

ExactGrad TreeBackend::run_step(const StepWork& work, const WeightsRef& weights) {
  if (gave_up_) throw BackendFailure("the sphere tree gave up earlier");
  const auto t0 = std::chrono::steady_clock::now();
  Partial result;
  caf::error failure;
  // No timeout here: the coordinator always answers (the step's total, or an error when it gives
  // up or throws), and its own deadlines catch hangs below it. (A timeout would also leave one
  // stale message per step in this long-lived blocking actor's mailbox.)
  (*self_)
      ->request(root_, caf::infinite, step_atom::value, work, weights, all_shards_,
                deadline_.base_ms())
      .receive([&](Partial& p) { result = std::move(p); },
               [&](caf::error& e) { failure = std::move(e); });
  if (failure) {
    gave_up_ = true;
    const GiveUp* g = as_give_up(failure);
    faults_ = g ? g->faults : FaultCounts{};
    throw BackendFailure(fmt::format("the sphere tree gave up in step {}: {}; the state after "
                                     "step {} is kept",
                                     work.step + 1, exit_reason_text(*sys_, failure), work.step),
                         faults_);
  }
  timing_ = result.timing;
  faults_ = std::move(result.faults);
  deadline_.record_step(
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  return std::move(result.grad);
}

std::vector<SphereStats> TreeBackend::sphere_stats() {
  const int n = setup_->topology.size();
  std::vector<SphereStats> out(static_cast<size_t>(n));
  for (const auto& node : setup_->topology.nodes()) {  // what is known without the tree
    SphereStats& s = out[size_t(node.id)];
    s.id = node.id, s.level = node.level, s.parent = node.parent, s.group = node.group;
    s.known = !gave_up_;  // unless lost, a sphere that is not asked has nothing to report
  }
  if (gave_up_) return out;
  auto& self = *self_;
  self->send(root_, stats_atom::value, caf::actor(self), int64_t(0));
  int64_t outstanding = 1;  // the coordinator reports too, with the number it asked
  bool silent = false;
  self->receive_while([&] { return outstanding > 0 && !silent; })(
      [&](stats_atom, SphereStats& s, int32_t asked) {
        outstanding += asked - 1;
        if (s.id >= 0 && s.id < n) out[size_t(s.id)] = s;
      },
      caf::after(std::chrono::seconds(10)) >> [&] { silent = true; });
  return out;
}

}  // namespace cllm
