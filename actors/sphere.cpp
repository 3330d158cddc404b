#include "actors/sphere.hpp"

#include <chrono>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "actors/supervisor.hpp"
#include "src/clock.hpp"

namespace cllm {

namespace {

// Internal to a sphere: compute the next of its own shards (one per message, so that a kill or a
// statistics request is handled between shards rather than after all of them).
using compute_atom = caf::atom_constant<caf::atom("compute")>;

using sphere_impl = sphere_actor::extend<caf::reacts_to<compute_atom, uint64_t>>;

struct Child : ChildSlot {
  int id = 0;
  bool had_work = false;  // ever: a subtree that never had work holds no statistics
};

// A sphere's own part of the step in flight (the supervision's part is Supervision).
struct StepInProgress {
  uint64_t token = 0;  // tells this step's compute messages from a previous step's
  WeightsRef weights;
  AssignmentRef assignment;
  StepCtl ctl;
  int pending = 0;          // children whose sums are missing
  std::vector<size_t> own;  // positions of own shards in the assignment, one per compute message
  size_t next_own = 0;
  int acks = 0;  // owners yet to fold the last shard's gradient (its buffer is theirs till then)
  SteadyClock::time_point own_done_at;

  bool own_done() const { return next_own >= own.size() && acks == 0; }
  bool may_compute() const { return next_own < own.size() && acks == 0; }
};

struct SphereState {
  static inline const char* name = "sphere";

  // A child whose last strong reference is in this state would be destroyed right here, and its
  // state with its own children, recursively: a deep chain overflowed the stack. An exit
  // message first schedules each child, so the scheduler holds it and it ends on its own.
  ~SphereState() {
    for (const auto& c : children)
      if (c.handle) caf::anon_send_exit(c.handle, caf::exit_reason::kill);
  }

  std::shared_ptr<const TreeSetup> setup;
  int id = 0;
  caf::actor_addr parent;
  std::vector<Child> children;
  Supervision sv;
  StepInProgress step;
  std::unique_ptr<ShardWorker> worker;  // created on first use: idle spheres hold no workspace
  SphereStats stats;
  uint64_t steps_begun = 0;
};

using sphere_pointer = sphere_impl::stateful_pointer<SphereState>;

sphere_impl::behavior_type sphere_behavior(sphere_pointer self,
                                           std::shared_ptr<const TreeSetup> setup, int id,
                                           caf::actor_addr parent);

void maybe_finish(sphere_pointer self) {
  auto& st = self->state;
  StepInProgress& step = st.step;
  if (!st.sv.active || !step.own_done() || step.pending > 0) return;
  if (!step.own.empty()) {  // only spheres that computed hold a core while they wait
    const double wait = ms_between(step.own_done_at, SteadyClock::now());
    st.sv.acc.timing.wait_ms += wait;
    st.stats.wait_ms += wait;
  }
  step.weights.reset();
  st.sv.answer();
}

void on_child_failure(sphere_pointer self, size_t index, ChildEnd end);

Child* find_child(SphereState& st, const caf::actor_addr& who) {
  for (Child& c : st.children)
    if (c.handle.address() == who) return &c;
  return nullptr;
}

void send_to_child(sphere_pointer self, size_t index) {
  auto& st = self->state;
  Child& c = st.children[index];
  send_work(
      self, st.sv, c, st.setup->topology.height(c.id), st.step.weights, st.step.assignment,
      st.step.ctl, false,
      [self](const caf::actor_addr& who) -> ChildSlot* { return find_child(self->state, who); },
      [self](const caf::actor_addr&, Partial& p) {
        auto& s = self->state;
        s.stats.reduce_ms += s.sv.acc.merge(p);
        --s.step.pending;
        maybe_finish(self);
      },
      [self, index](const caf::actor_addr&, ChildEnd end) {
        on_child_failure(self, index, std::move(end));
      });
}

// A child crashed, gave up or missed its deadline: the policy decides (actors/supervisor.hpp);
// respawn it in place and send its work again, or give up, which takes this subtree down and
// lets the parent restart it whole.
void on_child_failure(sphere_pointer self, size_t index, ChildEnd end) {
  auto& st = self->state;
  Child& c = st.children[index];
  restart_or_give_up(
      self, st.sv, c, c.id, std::move(end),
      [self, &c] { return spawn_sphere(self, self->state.setup, c.id); },
      [self, index] { send_to_child(self, index); },
      [&st](const FaultEvent& last) {
        return fmt::format("sphere {} gave up: {}; {}", st.id, st.sv.intensity.budget_text(),
                           last_failure_text(last));
      });
}

// One own shard is in the sum (folded here, or by every owner): the next one, or the end.
void after_own_shard(sphere_pointer self) {
  auto& step = self->state.step;
  if (step.own_done()) {
    self->state.sv.acc.timing.spheres += 1;
    step.own_done_at = SteadyClock::now();
    maybe_finish(self);
  } else {
    self->send(self, compute_atom::value, step.token);
  }
}

void on_owner_ack(sphere_pointer self, uint64_t token, double fold_ms) {
  auto& st = self->state;
  StepInProgress& step = st.step;
  if (!st.sv.active || token != step.token || step.acks == 0) return;
  if (fold_ms > 0) st.sv.acc.timing.fold_ms += fold_ms, st.stats.fold_ms += fold_ms;
  if (--step.acks == 0) after_own_shard(self);
}

void compute_next_own(sphere_pointer self) {
  auto& st = self->state;
  StepInProgress& step = st.step;
  Partial& acc = st.sv.acc;
  const StepWork& work = st.sv.work;
  if (!st.worker)  // a node has no sampler: its windows come with the work
    st.worker = st.setup->sampler ? std::make_unique<ShardWorker>(st.setup->run, *st.setup->sampler)
                                  : std::make_unique<ShardWorker>(st.setup->run);
  const size_t pos = step.own[step.next_own++];
  const ShardSet& set = step.assignment->set;
  const int32_t* tokens = set.tokens_of(pos, shard_tokens(st.setup->run));
  const OwnerSetRef& owners = step.assignment->owners;
  ++st.stats.shards;
  if (owners && !owners->owners.empty()) {
    // The gradient goes to every owner, which folds its slice; no sum of our own. The next
    // shard waits for every owner's answer: the buffer is reused.
    st.worker->compute_gradient(step.weights->data(), work, set.shards[pos], tokens);
    const double compute = st.worker->last_compute_ms();
    acc.timing.compute_ms += compute, st.stats.compute_ms += compute;
    const WeightsRef grad = st.worker->gradient_ref();
    const double loss = st.worker->last_loss();
    const int64_t ntok = st.worker->shard_token_count();
    const uint64_t token = step.token;
    step.acks = int(owners->owners.size());
    for (const owner_actor& o : owners->owners)
      self->request(o, caf::infinite, fold_atom::value, owners->round, work, set.shards[pos], grad,
                    loss, ntok)
          .then([=](double ms) { on_owner_ack(self, token, ms); },
                // A dead owner: the coordinator handles it (the round cannot complete).
                [=](caf::error&) { on_owner_ack(self, token, 0); });
    return;
  }
  if (acc.grad.sum.empty()) acc.grad.reset(st.worker->layout());
  st.worker->compute(step.weights->data(), work, set.shards[pos], acc.grad, tokens);
  const double compute = st.worker->last_compute_ms(), fold = st.worker->last_fold_ms();
  acc.timing.compute_ms += compute, acc.timing.fold_ms += fold;
  st.stats.compute_ms += compute, st.stats.fold_ms += fold;
  after_own_shard(self);
}

caf::result<Partial> on_step(sphere_pointer self, const StepWork& work, const WeightsRef& weights,
                             const AssignmentRef& assignment, const StepCtl& ctl) {
  auto& st = self->state;
  switch (st.setup->faults.action(st.id, work.step, work.attempt, ctl.delivery)) {
    case FaultPlan::do_crash:
      throw std::runtime_error("injected crash");
    case FaultPlan::do_hang:
      // Stop answering (alive but silent) until the parent kills it.
      return self->make_response_promise<Partial>();
    case FaultPlan::none:
      break;
  }
  StepInProgress& step = st.step;
  step = StepInProgress{};
  st.sv.begin(self, work);
  step.token = ++st.steps_begun;
  step.weights = weights, step.assignment = assignment, step.ctl = ctl;
  const ShardPlan& plan = *assignment->plan;
  // Work flows down first so that children compute while we do.
  for (size_t index = 0; index < st.children.size(); ++index) {
    Child& c = st.children[index];
    c.busy = false;
    if (plan.subtree(c.id) == 0) continue;
    ++step.pending;
    c.resends = 0;
    c.had_work = true;
    send_to_child(self, index);
  }
  for (int position : plan.own(st.id)) step.own.push_back(size_t(position));
  auto rp = st.sv.rp;
  if (!step.own.empty())
    self->send(self, compute_atom::value, step.token);
  else
    maybe_finish(self);
  return rp;
}

// Statistics go straight to the collector (no sphere concatenates its subtree's list: a chain
// would make that quadratic), with the number of children asked in turn, so the collector knows
// how many reports are still coming. A subtree that never had work nor a restart holds nothing
// to report (chaos and injections fire only in steps) and is not asked.
void on_stats(sphere_pointer self, const caf::actor& collector, int64_t restarts) {
  auto& st = self->state;
  int32_t asked = 0;
  for (const Child& c : st.children) {
    if (!c.had_work && c.restarts == 0) continue;
    self->send(c.handle, stats_atom::value, collector, c.restarts);
    ++asked;
  }
  SphereStats s = st.stats;
  s.restarts = restarts;
  // typed actors may only send() to typed ones
  caf::anon_send(collector, stats_atom::value, std::move(s), asked);
}

void install_handlers(sphere_pointer self) {
  end_on_exception(self, self->state.sv);
  self->set_exit_handler([self](caf::exit_msg& em) {
    auto& st = self->state;
    if (em.source == st.parent) {  // our parent is gone: the whole subtree goes with it
      self->quit(em.reason);
      return;
    }
    if (Child* c = find_child(st, em.source))
      return on_child_failure(self, size_t(c - st.children.data()),
                              read_child_exit(self->system(), em.reason));
    // The exit of an actor already replaced (killed on a deadline): nothing to do.
  });
}

sphere_impl::behavior_type sphere_behavior(sphere_pointer self,
                                           std::shared_ptr<const TreeSetup> setup, int id,
                                           caf::actor_addr parent) {
  auto& st = self->state;
  st.setup = setup;
  st.id = id;
  st.parent = parent;
  st.sv.intensity = RestartIntensity(setup->policy.max_restarts, setup->policy.window_s);
  const SphereInfo& pos = setup->topology.position(id);
  st.stats = SphereStats::placed(pos);
  st.children.resize(pos.children.size());
  for (size_t s = 0; s < pos.children.size(); ++s) {
    st.children[s].id = pos.children[s];
    st.children[s].handle = spawn_sphere(self, setup, pos.children[s]);
  }
  install_handlers(self);
  return {
      [self](step_atom, const StepWork& work, const WeightsRef& weights,
             const AssignmentRef& assignment, const StepCtl& ctl) -> caf::result<Partial> {
        return on_step(self, work, weights, assignment, ctl);
      },
      [self](stats_atom, const caf::actor& collector, int64_t restarts) {
        on_stats(self, collector, restarts);
      },
      [self](compute_atom, uint64_t token) {
        auto& step = self->state.step;
        if (self->state.sv.active && token == step.token && step.may_compute())
          compute_next_own(self);
      },
  };
}

}  // namespace

sphere_actor spawn_sphere(caf::local_actor* parent, std::shared_ptr<const TreeSetup> setup,
                          int id) {
  // sphere_impl is sphere_actor plus its internal message: the handle converts without a cast.
  return parent->spawn<caf::linked>(sphere_behavior, std::move(setup), id,
                                    caf::actor_addr(parent->address()));
}

}  // namespace cllm
