#include "actors/tree_backend.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ostream>
#include <thread>

#include <fmt/format.h>
#include <caf/io/all.hpp>

#include "actors/actor_system.hpp"
#include "actors/cluster_root.hpp"
#include "actors/coordinator.hpp"
#include "src/clock.hpp"
#include "src/fingerprint.hpp"

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
  if (opt.spheres == 0) {
    if (!opt.cluster.listen)
      throw ConfigError("--spheres 0 leaves no sphere to compute; it needs --listen for nodes");
    if (!opt.faults.injections.empty() || opt.faults.chaos_p > 0)
      throw ConfigError("--inject and --chaos name local spheres; with --spheres 0 there are none");
    return nullptr;
  }
  Topology topology(opt.spheres, opt.fanout);
  const ShardPlan plan(topology, run.batch.shards(), opt.placement);  // with no remote nodes
  const int owners = opt.owners > 0 ? opt.owners : std::max(1, opt.threads);
  for (const auto& inj : opt.faults.injections) {
    if (inj.owner) {
      if (inj.sphere >= owners)
        throw ConfigError(fmt::format(
            "--inject names owner {} but the step's sums have {} owners (one per --threads)",
            inj.sphere, owners));
      continue;
    }
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

TreeBackend::Config::Config(int threads, const ClusterOptions& cluster) {
  configure_actor_system(*this, {threads, cluster.listen, cluster.heartbeat_ms,
                                 cluster.connection_timeout_s, cluster.tls});
}

TreeBackend::TreeBackend(const RunConfig& run, const WindowSampler& sampler, const TreeOptions& opt)
    : setup_(make_setup(run, sampler, opt)),
      threads_(std::max(1, opt.threads)),
      deadline_(opt.policy, first_step_estimate_s(run, std::max(1, opt.threads))) {
  cfg_ = std::make_unique<Config>(threads_, opt.cluster);
  sys_ = std::make_unique<caf::actor_system>(*cfg_);
  CoordinatorSetup cs;
  cs.run = run, cs.local = setup_, cs.local_capacity = std::min(opt.spheres, threads_);
  cs.orphan_timeout_s = opt.cluster.orphan_timeout_s;
  cs.mesh = opt.cluster.mesh;
  sums_.resize(size_t(opt.owners > 0 ? opt.owners : threads_));
  cs.sums = &sums_;
  const CoordinatorHandles c = spawn_coordinator(*sys_, std::move(cs));
  coordinator_ = c.steps, slice_runner_ = c.slices;
  auto all = std::make_shared<ShardSet>();
  for (int32_t s = 0; s < run.batch.shards(); ++s) all->shards.push_back(s);
  all_shards_ = std::move(all);
  self_ = std::make_unique<caf::scoped_actor>(*sys_);
  if (opt.cluster.listen) listen(run, sampler, opt.cluster);
  membership_ = {0, setup_ ? setup_->topology.size() : 0};
}

void TreeBackend::listen(const RunConfig& run, const WindowSampler& sampler,
                         const ClusterOptions& c) {
  auto setup = std::make_shared<ClusterSetup>();
  setup->run = run;
  setup->key = c.key;
  setup->fingerprint = numerics_fingerprint(run, c.tokenizer_kind, c.tokenizer_data);
  setup->tokenizer_kind = c.tokenizer_kind, setup->tokenizer_data = c.tokenizer_data;
  setup->sampler = &sampler;
  setup->coordinator = coordinator_;
  setup->log = [](const std::string& line) { std::fprintf(stderr, "cllm: %s\n", line.c_str()); };
  gateway_ = spawn_gateway(*sys_, std::move(setup));
  auto port = publish_on_cluster(*sys_, gateway_, c.port, c.host);
  if (!port)
    throw ConfigError(
        fmt::format("cannot listen on {}:{}: {}", c.host, c.port, sys_->render(port.error())));
  port_ = *port;
}

TreeBackend::~TreeBackend() {
  if (gateway_) {
    // Tell every node the run is over (and wait a little for them to hear it), so that none is
    // left dialing a root that is gone.
    (*self_)
        ->request(coordinator_, std::chrono::seconds(5), shutdown_atom::value)
        .receive([](bool) {}, [](caf::error&) {});
    caf::anon_send_exit(gateway_, caf::exit_reason::kill);
    gateway_ = nullptr;
  }
  self_.reset();  // a live scoped_actor would block await_all_actors_done()
  // kill cannot be trapped; the links take the whole tree down with the coordinator.
  caf::anon_send_exit(coordinator_, caf::exit_reason::kill);
  coordinator_ = nullptr;
  slice_runner_ = nullptr;
  sys_->await_all_actors_done();
  sys_.reset();
}

const StepSums& TreeBackend::run_step(const StepWork& work, const WeightsRef& weights) {
  if (gave_up_) throw BackendFailure("the sphere tree gave up earlier");
  const auto t0 = SteadyClock::now();
  Partial result;
  caf::error failure;
  // No timeout here: the coordinator always answers (the step's total, or an error when it gives
  // up or throws), and its own deadlines catch hangs below it. (A timeout would also leave one
  // stale message per step in this long-lived blocking actor's mailbox.)
  (*self_)
      ->request(coordinator_, caf::infinite, step_atom::value, work, weights, all_shards_,
                StepCtl{0, deadline_.base_ms()})
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
  membership_ = result.members;
  deadline_.record_step(ms_since(t0), faults_.deadline_kills > 0);
  return sums_;  // the owners' slices, complete once the coordinator answered
}

void TreeBackend::release_sums() {
  // The owners wrote the slices before the coordinator answered, and touch them again only in
  // the next round, which begins after the next run_step: nothing else uses them now.
  for (ExactGrad& s : sums_) s = ExactGrad{};
}

void TreeBackend::run_slices(int n, const std::function<void(int)>& body) {
  if (gave_up_ || n != int(sums_.size())) return Backend::run_slices(n, body);
  bool ok = false;
  (*self_)
      ->request(slice_runner_, caf::infinite, apply_atom::value,
                std::make_shared<const std::function<void(int)>>(body))
      .receive([&](bool) { ok = true; }, [&](caf::error&) {});
  // The coordinator is gone (it gave up between the step and now): nothing ran on the owners
  // that it did not finish; this cannot be told apart per slice, so refuse rather than guess.
  if (!ok) throw std::runtime_error("the owners of the step's slices are gone");
}

Membership TreeBackend::query_membership() {
  Membership m = membership_;
  (*self_)
      ->request(coordinator_, std::chrono::seconds(5), members_atom::value)
      .receive([&](Membership& x) { m = x; }, [](caf::error&) {});
  return m;
}

void TreeBackend::wait_for_nodes(int nodes, double timeout_s, std::ostream& out) {
  const double start = seconds_now();
  double last_line = -10;
  for (;;) {
    membership_ = query_membership();
    if (membership_.nodes >= nodes) return;
    const double waited = seconds_now() - start;
    if (waited > timeout_s)
      throw ConfigError(fmt::format("only {} of {} nodes joined within {:g} s (--join-timeout)",
                                    membership_.nodes, nodes, timeout_s));
    if (waited - last_line >= 5) {
      out << fmt::format("waiting for nodes: {}/{} joined on port {} ({:.0f} s left)\n",
                         membership_.nodes, nodes, port_, timeout_s - waited)
          << std::flush;
      last_line = waited;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::vector<SphereStats> TreeBackend::sphere_stats() {
  const int n = setup_ ? setup_->topology.size() : 0;
  std::vector<SphereStats> out(static_cast<size_t>(n));
  for (int id = 0; id < n; ++id) {  // what is known without the tree
    SphereStats& s = out[size_t(id)];
    s = SphereStats::placed(setup_->topology.position(id));
    s.known = !gave_up_;  // unless lost, a sphere that is not asked has nothing to report
  }
  if (gave_up_) return out;
  std::vector<SphereStats> remote;
  auto& self = *self_;
  self->send(coordinator_, stats_atom::value, caf::actor(self), int64_t(0));
  int64_t outstanding = 1;  // the coordinator reports too, with the number it asked
  bool silent = false;
  self->receive_while([&] { return outstanding > 0 && !silent; })(
      [&](stats_atom, SphereStats& s, int32_t asked) {
        outstanding += asked - 1;
        if (s.node >= 0)
          remote.push_back(std::move(s));
        else if (s.id >= 0 && s.id < n)
          out[size_t(s.id)] = std::move(s);
      },
      caf::after(std::chrono::seconds(10)) >> [&] { silent = true; });
  std::sort(remote.begin(), remote.end(), [](const SphereStats& a, const SphereStats& b) {
    return a.node != b.node ? a.node < b.node : a.id < b.id;
  });
  out.insert(out.end(), remote.begin(), remote.end());
  return out;
}

}  // namespace cllm
