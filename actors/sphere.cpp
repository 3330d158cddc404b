#include "actors/sphere.hpp"

#include "src/rng.hpp"

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
  std::vector<int32_t> resends;  // resends of the current step's work, per slot
  int restarts_this_step = 0;
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
  return st.setup->plan.subtree(st.child_ids[slot]) > 0;
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

// The delivery number of a child's work: 0 only when neither it nor any ancestor was resent
// (injections fire only then); otherwise a hash of the parent's delivery and the resend count,
// so that a chaos draw is not repeated after a resend or a subtree restart.
int32_t next_delivery(int32_t parent, int32_t resend) {
  if (parent == 0 && resend == 0) return 0;
  return int32_t(hash_words(uint64_t(uint32_t(parent)), uint64_t(resend)) & 0x7fffffffU) | 1;
}

// A child crashed, was killed, gave up or missed its deadline: respawn it in place and send
// its work again. `inherited` holds what a child that gave up had counted (it travels in the
// exit reason). Returns false when this sphere has given up instead.
bool restart_child(sphere_actor* self, size_t slot, bool deadline, bool gave_up,
                   const FaultCounts& inherited = {}) {
  auto& st = self->state;
  FaultCounts& fc = st.active ? st.acc.faults : st.faults_between_steps;
  fc += inherited;
  if (deadline) {
    self->send_exit(st.children[slot], caf::exit_reason::kill);
    ++fc.deadline_kills;
  }
  // Restart intensity: at most R restarts within T seconds, and never more than R within one
  // step (with slow steps, failures could otherwise be spaced wider than the window forever).
  const auto now = clock_type::now();
  st.restart_times.push_back(now);
  const auto window = std::chrono::duration<double>(restart_window(st));
  while (!st.restart_times.empty() && now - st.restart_times.front() > window)
    st.restart_times.pop_front();
  if (st.active) ++st.restarts_this_step;
  if (int(st.restart_times.size()) > restart_budget(st) ||
      st.restarts_this_step > restart_budget(st)) {
    const std::string why =
        st.id == kSupervisorId
            ? fmt::format(
                  "sphere 0 failed more than {} times within {:g} s or one step (the "
                  "root's restart budget, --root-max-restarts/--root-restart-window)",
                  restart_budget(st), restart_window(st))
            : fmt::format(
                  "sphere {} gave up: more than {} restarts of its children within {:g} s "
                  "or one step",
                  st.id, restart_budget(st), restart_window(st));
    // What this sphere counted travels with its exit (to its parent) and with the answer to the
    // pending step (to the backend, when this is the supervisor): a dead actor's promises are
    // never answered in CAF 0.17.
    const FaultCounts f = fc;
    if (st.active)
      st.rp.deliver(caf::make_error(caf::sec::runtime_error, why, f.restarts, f.deadline_kills,
                                    f.subtree_restarts));
    self->quit(caf::error(static_cast<uint8_t>(kGaveUp), caf::atom("exit"),
                          caf::make_message(f.restarts, f.deadline_kills, f.subtree_restarts)));
    return false;
  }
  if (gave_up)
    ++fc.subtree_restarts;
  else
    ++fc.restarts;
  ++st.child_restarts[slot];
  spawn_child(self, slot);
  if (st.active && st.in_flight[slot])
    send_to_child(self, slot, next_delivery(st.ctl.delivery, ++st.resends[slot]));
  return true;
}

void send_to_child(sphere_actor* self, size_t slot, int32_t delivery) {
  auto& st = self->state;
  const uint64_t gen = ++st.generation[slot];
  st.in_flight[slot] = true;
  StepCtl ctl = st.ctl;
  ctl.delivery = delivery;
  // A child whose subtree is h levels high answers within h + 1 deadlines, so a fault is caught
  // by its lowest ancestor first and a respawned child can finish before the next level's
  // timer fires.
  const int height = st.setup->topology.height(st.child_ids[slot]);
  // (Capped at ~30 years: CAF converts to nanoseconds, which must not overflow.)
  const auto timeout =
      std::chrono::milliseconds(std::min<int64_t>(ctl.deadline_ms * (height + 1), int64_t(1e12)));
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
  st.resends.assign(n, 0);
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
      FaultCounts inherited;
      const bool gave_up = em.reason == kGaveUp;
      const caf::message& ctx = em.reason.context();
      if (gave_up && ctx.match_elements<int64_t, int64_t, int64_t>()) {
        inherited.restarts = ctx.get_as<int64_t>(0);
        inherited.deadline_kills = ctx.get_as<int64_t>(1);
        inherited.subtree_restarts = ctx.get_as<int64_t>(2);
      }
      restart_child(self, slot, /*deadline=*/false, gave_up, inherited);
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
        s.restarts_this_step = 0;
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
          s.resends[slot] = 0;
          send_to_child(self, slot, next_delivery(ctl.delivery, 0));
        }
        if (s.id != kSupervisorId) {
          const auto own = s.setup->plan.own(s.id);
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
          const int height = s.setup->topology.height(s.child_ids[slot]);
          self->request(s.children[slot], std::chrono::seconds(5 * (height + 1)), stats_atom::value)
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
