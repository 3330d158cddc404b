#include "actors/sphere.hpp"

#include <chrono>
#include <deque>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace cllm {

namespace {

using clock_type = std::chrono::steady_clock;

double ms_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// A sphere that exceeded its restart intensity quits with this reason; its parent counts the
// respawn as a subtree restart. (Crashes end with an error, kills with exit_reason::kill.)
const caf::exit_reason kGaveUp = caf::exit_reason::user_shutdown;

struct SphereState {
  static inline const char* name = "sphere";

  std::shared_ptr<const TreeSetup> setup;
  int id = 0, level = 0;
  caf::actor_addr parent;

  // Children by slot.
  std::vector<int> child_ids;
  std::vector<caf::actor> children;
  std::vector<uint64_t> generation;  // bumps on every (re)send; stale replies are ignored
  std::vector<bool> in_flight;
  std::vector<int32_t> delivery;  // delivery number of the child's current work
  std::vector<int64_t> child_restarts;
  std::deque<clock_type::time_point> restart_times;

  std::unique_ptr<ShardWorker> worker;  // created on first use: idle spheres hold no workspace

  // The step in progress.
  bool active = false;
  StepWork work;
  WeightsRef weights;
  StepCtl ctl;
  Partial acc;
  int pending = 0;
  bool own_done = false;
  clock_type::time_point own_done_at;
  caf::typed_response_promise<Partial> rp;
  FaultCounts faults_between_steps;  // restarts of idle children, reported with the next step

  SphereStats stats;
};

using sphere_actor = caf::stateful_actor<SphereState>;

caf::behavior sphere_behavior(sphere_actor* self, std::shared_ptr<const TreeSetup> setup, int id,
                              caf::actor_addr parent);

int restart_budget(const SphereState& st) {
  return st.id == kSupervisorId ? st.setup->policy.root_max_restarts
                                : st.setup->policy.max_restarts;
}
double restart_window(const SphereState& st) {
  return st.id == kSupervisorId ? st.setup->policy.root_window_s : st.setup->policy.window_s;
}

void spawn_child(sphere_actor* self, size_t slot) {
  auto& st = self->state;
  st.children[slot] = self->spawn<caf::linked>(sphere_behavior, st.setup, st.child_ids[slot],
                                               caf::actor_addr(self->address()));
}

bool subtree_has_work(const SphereState& st, size_t slot) {
  return st.setup->topology.subtree_shards(st.child_ids[slot], st.work.shards) > 0;
}

void merge_partial(SphereState& st, Partial& p) {
  const auto t0 = clock_type::now();
  if (st.acc.grad.shards == 0 && st.acc.grad.sum.empty())
    st.acc.grad = std::move(p.grad);  // nothing of our own yet: adopt, no copy
  else
    st.acc.grad.merge(p.grad);
  st.acc.timing.compute_ms += p.timing.compute_ms;
  st.acc.timing.fold_ms += p.timing.fold_ms;
  st.acc.timing.reduce_ms += p.timing.reduce_ms;
  st.acc.timing.workers += p.timing.workers;
  st.acc.faults += p.faults;
  const double ms = ms_between(t0, clock_type::now());
  st.acc.timing.reduce_ms += ms;
  st.stats.reduce_ms += ms;
}

void maybe_finish(sphere_actor* self) {
  auto& st = self->state;
  if (!st.active || !st.own_done || st.pending > 0) return;
  st.stats.wait_ms += ms_between(st.own_done_at, clock_type::now());
  st.acc.faults += st.faults_between_steps;
  st.faults_between_steps = FaultCounts{};
  st.active = false;
  st.weights.reset();
  st.rp.deliver(std::move(st.acc));
  st.acc = Partial{};
}

void send_to_child(sphere_actor* self, size_t slot, int32_t delivery);

// A child crashed, was killed, gave up or missed its deadline: respawn it in place and send
// its work again. Returns false when this sphere has given up instead.
bool restart_child(sphere_actor* self, size_t slot, bool deadline, bool gave_up) {
  auto& st = self->state;
  FaultCounts& fc = st.active ? st.acc.faults : st.faults_between_steps;
  if (deadline) {
    self->send_exit(st.children[slot], caf::exit_reason::kill);
    ++fc.deadline_kills;
  }
  // Restart intensity: at most R restarts within T seconds.
  const auto now = clock_type::now();
  st.restart_times.push_back(now);
  const auto window = std::chrono::duration<double>(restart_window(st));
  while (!st.restart_times.empty() && now - st.restart_times.front() > window)
    st.restart_times.pop_front();
  if (int(st.restart_times.size()) > restart_budget(st)) {
    // Answer the pending step (a dead actor's promises are never answered in CAF 0.17). The
    // error carries this step's fault counters so far, so that they are not lost.
    if (st.active) {
      const std::string why =
          st.id == kSupervisorId
              ? fmt::format(
                    "sphere 0 failed more than {} times within {:g} s (the root's restart "
                    "budget, --root-max-restarts/--root-restart-window)",
                    restart_budget(st), restart_window(st))
              : fmt::format(
                    "sphere {} gave up: more than {} restarts of its children within {:g} s", st.id,
                    restart_budget(st), restart_window(st));
      const FaultCounts& f = st.acc.faults;
      st.rp.deliver(caf::make_error(caf::sec::runtime_error, why, f.restarts + 1, f.deadline_kills,
                                    f.subtree_restarts));
    }
    self->quit(kGaveUp);
    return false;
  }
  if (gave_up)
    ++fc.subtree_restarts;
  else
    ++fc.restarts;
  ++st.child_restarts[slot];
  spawn_child(self, slot);
  // Each resend is a new delivery, so a chaos draw is never repeated for the same work.
  if (st.active && st.in_flight[slot]) send_to_child(self, slot, st.delivery[slot] + 1);
  return true;
}

void send_to_child(sphere_actor* self, size_t slot, int32_t delivery) {
  auto& st = self->state;
  const uint64_t gen = ++st.generation[slot];
  st.in_flight[slot] = true;
  st.delivery[slot] = delivery;
  StepCtl ctl = st.ctl;
  ctl.delivery = delivery;
  // Children at depth d below us answer within d deadlines; deeper faults are caught first.
  const int depth_below = st.setup->topology.levels() - 1 - st.level;
  const auto timeout = std::chrono::milliseconds(ctl.deadline_ms * std::max(1, depth_below));
  const caf::actor_addr child_addr = st.children[slot].address();
  self->request(st.children[slot], timeout, step_atom::value, st.work, st.weights, ctl)
      .then(
          [=](Partial& p) {
            auto& s = self->state;
            if (!s.active || s.generation[slot] != gen) return;
            s.in_flight[slot] = false;
            merge_partial(s, p);
            --s.pending;
            maybe_finish(self);
          },
          [=](caf::error& err) {
            auto& s = self->state;
            // Crashes arrive as exit messages and are handled there; here only the deadline.
            if (err != caf::sec::request_timeout) return;
            if (!s.active || s.generation[slot] != gen || s.children[slot].address() != child_addr)
              return;
            restart_child(self, slot, /*deadline=*/true, /*gave_up=*/false);
          });
}

caf::behavior sphere_behavior(sphere_actor* self, std::shared_ptr<const TreeSetup> setup, int id,
                              caf::actor_addr parent) {
  auto& st = self->state;
  st.setup = setup;
  st.id = id;
  st.parent = parent;
  const Topology& topo = setup->topology;
  if (id == kSupervisorId) {
    st.level = -1;
    st.child_ids = {0};
  } else {
    const auto& node = topo.node(id);
    st.level = node.level;
    st.child_ids = node.children;
    st.stats.id = id, st.stats.level = node.level, st.stats.parent = node.parent;
    st.stats.group = node.group;
  }
  const size_t n = st.child_ids.size();
  st.children.resize(n);
  st.generation.assign(n, 0);
  st.in_flight.assign(n, false);
  st.delivery.assign(n, 0);
  st.child_restarts.assign(n, 0);
  for (size_t s = 0; s < n; ++s) spawn_child(self, s);

  // Quietly turn exceptions (injected crashes included) into an error exit reason.
  self->set_exception_handler([](caf::scheduled_actor*, std::exception_ptr& ep) -> caf::error {
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      return caf::make_error(caf::sec::runtime_error, e.what());
    } catch (...) {
      return caf::make_error(caf::sec::runtime_error, "unknown exception");
    }
  });
  self->set_exit_handler([=](caf::exit_msg& em) {
    auto& s = self->state;
    if (em.source == s.parent) {  // our parent is gone: the whole subtree goes with it
      self->quit(em.reason);
      return;
    }
    for (size_t slot = 0; slot < s.children.size(); ++slot) {
      if (s.children[slot].address() != em.source) continue;
      restart_child(self, slot, /*deadline=*/false, em.reason == kGaveUp);
      return;
    }
    // Exit of an actor we already replaced (e.g. killed on a deadline): nothing to do.
  });

  return {
      [=](step_atom, const StepWork& work, const WeightsRef& weights,
          const StepCtl& ctl) -> caf::result<Partial> {
        auto& s = self->state;
        const auto action =
            s.id == kSupervisorId
                ? FaultPlan::none
                : s.setup->faults.action(s.id, work.step, work.attempt, ctl.delivery);
        switch (action) {
          case FaultPlan::do_crash:
            throw std::runtime_error("injected crash of sphere " + std::to_string(s.id) +
                                     " at step " + std::to_string(work.step));
          case FaultPlan::do_hang:
            // Stop answering (the actor stays alive but silent) until the parent kills it.
            return self->make_response_promise<Partial>();
          case FaultPlan::none:
            break;
        }
        s.active = true;
        s.work = work;
        s.weights = weights;
        s.ctl = ctl;
        s.acc = Partial{};
        s.own_done = false;
        s.pending = 0;
        s.rp = self->make_response_promise<Partial>();
        // Work flows down first so that children compute while we do.
        for (size_t slot = 0; slot < s.children.size(); ++slot) {
          s.in_flight[slot] = false;
          if (!subtree_has_work(s, slot)) continue;
          ++s.pending;
          send_to_child(self, slot, ctl.delivery);
        }
        if (s.id != kSupervisorId) {
          const auto own = s.setup->topology.own_shards(s.id, work.shards);
          if (!own.empty()) {
            if (!s.worker)
              s.worker = std::make_unique<ShardWorker>(s.setup->run, *s.setup->sampler);
            if (s.acc.grad.sum.empty()) s.acc.grad.reset(s.worker->layout());
            for (int shard : own) {
              s.worker->compute(weights->data(), work, shard, s.acc.grad);
              s.acc.timing.compute_ms += s.worker->last_compute_ms();
              s.acc.timing.fold_ms += s.worker->last_fold_ms();
              s.stats.compute_ms += s.worker->last_compute_ms();
              s.stats.fold_ms += s.worker->last_fold_ms();
              ++s.stats.shards;
            }
            s.acc.timing.workers += 1;
          }
        }
        s.own_done = true;
        s.own_done_at = clock_type::now();
        auto rp = s.rp;
        maybe_finish(self);
        return rp;
      },
      [=](stats_atom) -> caf::result<std::vector<SphereStats>> {
        auto& s = self->state;
        auto out = std::make_shared<std::vector<SphereStats>>();
        if (s.id != kSupervisorId) out->push_back(s.stats);
        auto rp = self->make_response_promise<std::vector<SphereStats>>();
        auto remaining = std::make_shared<size_t>(s.children.size());
        if (*remaining == 0) {
          rp.deliver(*out);
          return rp;
        }
        for (size_t slot = 0; slot < s.children.size(); ++slot) {
          const int64_t restarts = s.child_restarts[slot];
          auto done = [=]() mutable {
            if (--*remaining == 0) rp.deliver(*out);
          };
          self->request(s.children[slot], std::chrono::seconds(30), stats_atom::value)
              .then(
                  [=](std::vector<SphereStats>& v) mutable {
                    if (!v.empty()) v.front().restarts = restarts;  // the child's own entry
                    out->insert(out->end(), v.begin(), v.end());
                    done();
                  },
                  [=](caf::error&) mutable { done(); });
        }
        return rp;
      },
  };
}

}  // namespace

caf::actor spawn_sphere(caf::actor_system& sys, std::shared_ptr<const TreeSetup> setup, int id) {
  return sys.spawn(sphere_behavior, std::move(setup), id, caf::actor_addr());
}

}  // namespace cllm
