// An owner folds each shard of a round once: a resent shard (from a respawned sphere) or a node's
// partial covering shards it already has never counts twice, and an older round is ignored.
#include <catch2/catch.hpp>
#include <memory>
#include <vector>

#include "actors/owner.hpp"
#include "messages/messages.hpp"
#include "test_util.hpp"

using namespace cllm;

namespace {
struct Config : caf::actor_system_config {
  Config() { register_messages(*this); }
};

double ask(caf::scoped_actor& self, const owner_actor& o, uint64_t round, const StepWork& work,
           int32_t shard, const WeightsRef& grad, double loss) {
  double out = -2;
  self->request(o, caf::infinite, fold_atom::value, round, work, shard, grad, loss, int64_t(10))
      .receive([&](double ms) { out = ms; }, [](caf::error&) { FAIL("the owner failed"); });
  return out;
}
}  // namespace

TEST_CASE("an owner folds each shard of a round once and ignores older rounds", "[owners]") {
  const RunConfig cfg = test::spheres_run();
  const ParamLayout layout(cfg.model);
  const Slicing slicing(layout.total(), 3);
  StepWork work;
  work.shards = 4;
  work.grad_scale_exp = choose_grad_scale_exp(layout, {}, work.shards);
  std::vector<WeightsRef> grads;
  for (int s = 0; s < 4; ++s) {
    auto g = std::make_shared<AlignedVector<float>>(layout.total(), 0.0f);
    for (size_t i = 0; i < g->size(); ++i) (*g)[i] = float((i * 7 + size_t(s) * 13) % 29) * 1e-3f;
    grads.push_back(std::move(g));
  }
  // What slice 1 must hold: shards 0..3 folded once each.
  ExactGrad expected;
  expected.reset(layout, slicing.begin(1), slicing.end(1));
  for (int s = 0; s < 4; ++s)
    expected.add_shard(layout, grads[size_t(s)]->data(), work.grad_scale_exp, 4, 0.5, 10);

  Config cc;
  caf::actor_system sys(cc);
  ExactGrad slot;
  {
    caf::scoped_actor self(sys);
    auto setup = std::make_shared<const OwnerSetup>(
        OwnerSetup{layout, 1, slicing.begin(1), slicing.end(1), &slot, {}});
    const owner_actor owner = spawn_owner(self.ptr(), setup);
    REQUIRE(ask(self, owner, 5, work, 0, grads[0], 0.5) >= 0);
    REQUIRE(ask(self, owner, 5, work, 1, grads[1], 0.5) >= 0);
    REQUIRE(ask(self, owner, 5, work, 1, grads[1], 0.5) == 0);   // resent: skipped
    REQUIRE(ask(self, owner, 4, work, 2, grads[2], 0.5) == -1);  // an older round: ignored
    // What the coordinator asks before it answers a step: shards 0 and 1 of round 5 are in.
    const auto held = [&](uint64_t round) {
      int32_t n = -2;
      self->request(owner, caf::infinite, held_atom::value, round)
          .receive([&](int32_t x) { n = x; }, [](caf::error&) { FAIL("the owner failed"); });
      return n;
    };
    REQUIRE(held(5) == 2);
    REQUIRE(held(4) == -1);
    // Shards 1 and 2 from a node: 1 is already in, so the whole partial is skipped...
    ExactGrad whole(layout);
    whole.add_shard(layout, grads[1]->data(), work.grad_scale_exp, 4, 0.5, 10);
    whole.add_shard(layout, grads[2]->data(), work.grad_scale_exp, 4, 0.5, 10);
    double ms = -2;
    self->request(owner, caf::infinite, merge_atom::value, uint64_t(5), work,
                  std::vector<int32_t>{1, 2}, ExactGradRef(std::make_shared<ExactGrad>(whole)))
        .receive([&](double x) { ms = x; }, [](caf::error&) { FAIL("the owner failed"); });
    REQUIRE(ms == 0);
    // ... and shards 2 and 3 alone are merged.
    ExactGrad rest(layout);
    rest.add_shard(layout, grads[2]->data(), work.grad_scale_exp, 4, 0.5, 10);
    rest.add_shard(layout, grads[3]->data(), work.grad_scale_exp, 4, 0.5, 10);
    self->request(owner, caf::infinite, merge_atom::value, uint64_t(5), work,
                  std::vector<int32_t>{2, 3}, ExactGradRef(std::make_shared<ExactGrad>(rest)))
        .receive([&](double x) { ms = x; }, [](caf::error&) { FAIL("the owner failed"); });
    REQUIRE(ms >= 0);
    REQUIRE(slot.begin == expected.begin);
    REQUIRE(slot.sum == expected.sum);
    REQUIRE(slot.shards == 4);
    REQUIRE(slot.tokens == expected.tokens);
    REQUIRE(slot.loss_fixed == expected.loss_fixed);
    REQUIRE(held(5) == 4);
    // A newer round starts the slice afresh.
    REQUIRE(ask(self, owner, 6, work, 3, grads[3], 0.5) >= 0);
    REQUIRE(slot.shards == 1);
    self->send_exit(owner, caf::exit_reason::user_shutdown);
  }
  sys.await_all_actors_done();
}
