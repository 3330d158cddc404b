#include "actors/tree_backend.hpp"

#include <algorithm>
#include <chrono>
#include <thread>

#include <fmt/format.h>

namespace cllm {

namespace {
int detected_cores() {
  return std::max(1u, std::thread::hardware_concurrency());
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
    : threads_(opt.threads > 0 ? opt.threads : detected_cores()) {
  opt.policy.validate();
  Topology topology(opt.spheres, opt.fanout);
  ShardPlan plan(topology, run.batch.shards(), opt.placement);
  auto setup = std::make_shared<TreeSetup>(
      TreeSetup{run, std::move(topology), std::move(plan), &sampler, opt.faults, opt.policy});
  for (const auto& inj : opt.faults.injections) {
    if (inj.sphere >= opt.spheres)
      throw ConfigError(fmt::format("--inject names sphere {} but the tree has {} spheres",
                                    inj.sphere, opt.spheres));
    if (setup->plan.subtree(inj.sphere) == 0)
      throw ConfigError(fmt::format(
          "--inject names sphere {}, which never receives work ({} shards per step go to {} "
          "spheres; see --print-topology); pick one of those or an ancestor",
          inj.sphere, run.batch.shards(), setup->plan.computing_spheres()));
  }
  setup_ = std::move(setup);
  cfg_ = std::make_unique<Config>(threads_);
  sys_ = std::make_unique<caf::actor_system>(*cfg_);
  root_ = spawn_sphere(*sys_, setup_, kSupervisorId);
  self_ = std::make_unique<caf::scoped_actor>(*sys_);
}

TreeBackend::~TreeBackend() {
  self_.reset();  // a live scoped_actor would block await_all_actors_done()
  // kill cannot be trapped; the links take the whole tree down with the supervisor.
  caf::anon_send_exit(root_, caf::exit_reason::kill);
  root_ = nullptr;
  sys_->await_all_actors_done();
  sys_.reset();
}

int64_t TreeBackend::deadline_ms() const {
  const auto& p = setup_->policy;
  if (recent_step_ms_.empty()) {
    // No step time yet: allow 4x a pessimistic estimate (1 GFLOP/s per thread) of the step's
    // work, and at least first_deadline_s, so that a big first step is never killed as a hang.
    const RunConfig& r = setup_->run;
    const double flops = 6.0 * double(ParamLayout(r.model).num_parameters()) *
                         double(r.batch.tokens_per_step()) * 1.5;  // + attention, generously
    const double est_s = flops / (1e9 * double(threads_));
    return int64_t(std::min(1e9, 1000 * std::max(p.first_deadline_s, 4 * est_s)));
  }
  std::vector<double> v(recent_step_ms_.begin(), recent_step_ms_.end());
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return int64_t(
      std::min(1e9, std::max(p.deadline_floor_s * 1000, p.deadline_factor * v[v.size() / 2])));
}

ExactGrad TreeBackend::run_step(const StepWork& work, const WeightsRef& weights) {
  const auto t0 = std::chrono::steady_clock::now();
  StepCtl ctl;
  ctl.deadline_ms = deadline_ms();
  Partial result;
  std::string failure;
  {
    auto& self = *self_;
    // No timeout here: the supervisor always answers (the step's total, or an error when it
    // gives up), and its own deadlines catch hangs below it. (A timeout would also leave one
    // stale message per step in this long-lived blocking actor's mailbox.)
    self->request(root_, caf::infinite, step_atom::value, work, weights, ctl)
        .receive([&](Partial& p) { result = std::move(p); },
                 [&](caf::error& e) {
                   // A give-up carries (text, restarts, deadline kills, subtree restarts).
                   const caf::message& ctx = e.context();
                   if (ctx.match_elements<std::string, int64_t, int64_t, int64_t>()) {
                     failure = ctx.get_as<std::string>(0);
                     faults_.restarts += ctx.get_as<int64_t>(1);
                     faults_.deadline_kills += ctx.get_as<int64_t>(2);
                     faults_.subtree_restarts += ctx.get_as<int64_t>(3);
                   } else {
                     failure = sys_->render(e);
                   }
                 });
  }
  if (!failure.empty())
    throw BackendFailure(
        fmt::format("the sphere tree gave up in step {}: {}; the state after "
                    "step {} is kept",
                    work.step + 1, failure, work.step));
  timing_ = result.timing;
  faults_ += result.faults;
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  recent_step_ms_.push_back(ms);
  if (recent_step_ms_.size() > 9) recent_step_ms_.pop_front();
  return std::move(result.grad);
}

nlohmann::json TreeBackend::worker_stats() {
  std::vector<SphereStats> stats;
  {
    auto& self = *self_;
    self->request(root_, std::chrono::seconds(60), stats_atom::value)
        .receive([&](std::vector<SphereStats>& v) { stats = std::move(v); }, [&](caf::error&) {});
  }
  if (stats.empty()) {
    // The tree is gone (it gave up): list the spheres with their place in the tree only.
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& n : setup_->topology.nodes())
      arr.push_back({{"id", n.id},
                     {"level", n.level},
                     {"parent", n.parent},
                     {"group", n.group},
                     {"statistics", "lost: the tree gave up"}});
    return arr;
  }
  std::sort(stats.begin(), stats.end(),
            [](const SphereStats& a, const SphereStats& b) { return a.id < b.id; });
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& s : stats)
    arr.push_back({{"id", s.id},
                   {"level", s.level},
                   {"parent", s.parent},
                   {"group", s.group},
                   {"shards", s.shards},
                   {"compute_ms", s.compute_ms},
                   {"fold_ms", s.fold_ms},
                   {"reduce_ms", s.reduce_ms},
                   {"wait_ms", s.wait_ms},
                   {"restarts", s.restarts}});
  return arr;
}

nlohmann::json TreeBackend::fault_counters() {
  return {{"restarts", faults_.restarts},
          {"deadline_kills", faults_.deadline_kills},
          {"subtree_restarts", faults_.subtree_restarts}};
}

}  // namespace cllm
