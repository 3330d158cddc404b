// Supervision: crashed, hung and chaotic spheres are restarted in place and the result is
// bit-identical to the fault-free run.
#include <catch2/catch.hpp>
#include <string>

#include "actors/tree_backend.hpp"
#include "test_util.hpp"

using namespace cllm;

namespace {
const char* const kSentence = "Spheres crash and hang, and the run goes on exactly. ";
// 16 shards of one 16-token sequence per step.
RunConfig tiny_run(int steps) {
  return test::tiny_run(/*context=*/16, /*batch=*/16, /*micro_batch=*/1, steps, /*warmup=*/1);
}
struct Run {
  std::string hash;
  FaultCounts faults;
  std::string failure;
};
Run train(const RunConfig& cfg, const WindowSampler& sampler, TreeOptions opt) {
  TreeBackend tree(cfg, sampler, opt);
  TrainState st(cfg);
  Run r;
  try {
    test::train_steps(tree, st, cfg.steps, &r.faults);
  } catch (const BackendFailure& e) {
    r.failure = e.what();
    r.faults += e.faults;
  }
  r.hash = test::weights_hash(st);
  return r;
}
// Deadlines far beyond any step's time, however slow the machine (a sanitizer build, a loaded CI
// runner): only the test of hangs needs short ones, and asks for them.
TreeOptions tree_opts(int spheres, int fanout) {
  TreeOptions o;
  o.spheres = spheres, o.fanout = fanout, o.threads = 2;
  test::patient(o.policy);
  return o;
}
// Hangs detected quickly. A slow step may also be killed as a hang: the result is the same, and
// the test counts kills as a lower bound.
TreeOptions hang_opts(int spheres, int fanout) {
  TreeOptions o = tree_opts(spheres, fanout);
  o.policy.deadline_floor_s = 0.3;
  o.policy.first_deadline_s = 5;
  return o;
}
}  // namespace

TEST_CASE("crashes of chosen spheres leave the result unchanged", "[faults]") {
  const auto tokens = test::toy_corpus(4000, kSentence);
  const RunConfig cfg = tiny_run(4);
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  const Run clean = train(cfg, sampler, tree_opts(157, 12));
  REQUIRE(clean.faults.restarts == 0);

  struct Case {
    const char* what;
    std::vector<Injection> inj;
  };
  const std::vector<Case> cases = {
      // 157 spheres, fan-out 12, 16 shards: spheres 0-15 compute; 1-12 are inner spheres and
      // 13-15 leaves below sphere 1.
      {"a child of the root", {{Injection::crash, 3, 1}}},
      {"the root sphere", {{Injection::crash, 0, 2}}},
      {"an inner sphere with children", {{Injection::crash, 1, 1}}},
      {"a leaf", {{Injection::crash, 14, 0}}},
      {"several at once",
       {{Injection::crash, 1, 1}, {Injection::crash, 15, 2}, {Injection::crash, 2, 3}}},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    TreeOptions o = tree_opts(157, 12);
    o.faults.injections = c.inj;
    const Run r = train(cfg, sampler, o);
    REQUIRE(r.failure.empty());
    REQUIRE(r.hash == clean.hash);
    REQUIRE(r.faults.restarts >= int64_t(c.inj.size()));
  }
}

TEST_CASE("a hung sphere is killed at its deadline and the result is unchanged", "[faults]") {
  const auto tokens = test::toy_corpus(4000, kSentence);
  const RunConfig cfg = tiny_run(3);
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  const Run clean = train(cfg, sampler, tree_opts(13, 3));
  for (int sphere : {5, 1}) {  // a leaf, then an inner sphere
    TreeOptions o = hang_opts(13, 3);
    o.faults.injections = {{Injection::hang, sphere, 1}};
    const Run r = train(cfg, sampler, o);
    INFO("hung sphere " << sphere);
    REQUIRE(r.failure.empty());
    REQUIRE(r.hash == clean.hash);
    // At least the injected hang (a loaded machine may add a spurious, harmless one).
    REQUIRE(r.faults.deadline_kills >= 1);
  }
}

TEST_CASE("chaos with at least 50 crashes gives the fault-free weights", "[faults]") {
  const auto tokens = test::toy_corpus(4000, kSentence);
  const RunConfig cfg = tiny_run(12);
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  const Run clean = train(cfg, sampler, tree_opts(16, 3));
  TreeOptions o = tree_opts(16, 3);
  o.faults.chaos_p = 0.3;
  o.faults.chaos_seed = 7;
  o.policy.max_restarts = 1000;
  o.policy.root_max_restarts = 1000;
  const Run r = train(cfg, sampler, o);
  INFO(r.failure);
  REQUIRE(r.failure.empty());
  REQUIRE(r.hash == clean.hash);
  REQUIRE(r.faults.restarts + r.faults.subtree_restarts >= 50);
}

TEST_CASE("past the root's restart limit the tree gives up cleanly", "[faults]") {
  const auto tokens = test::toy_corpus(4000, kSentence);
  const RunConfig cfg = tiny_run(30);
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  TreeOptions o = tree_opts(4, 2);
  o.faults.chaos_p = 0.9;  // sphere 0 crashes nearly every time
  o.policy.max_restarts = 2;
  o.policy.root_max_restarts = 2;
  const Run r = train(cfg, sampler, o);
  REQUIRE_FALSE(r.failure.empty());
  REQUIRE_THAT(r.failure, Catch::Contains("gave up"));
}

TEST_CASE("a sphere past its restart intensity makes its parent restart the subtree", "[faults]") {
  const auto tokens = test::toy_corpus(4000, kSentence);
  const RunConfig cfg = tiny_run(6);
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  const Run clean = train(cfg, sampler, tree_opts(13, 3));
  TreeOptions o = tree_opts(13, 3);
  // Sphere 1's children 4, 5 and 6 crash in the same step: with a budget of 2 restarts sphere 1
  // gives up and the root sphere restarts its whole subtree.
  o.faults.injections = {
      {Injection::crash, 4, 2}, {Injection::crash, 5, 2}, {Injection::crash, 6, 2}};
  o.policy.max_restarts = 2;
  const Run r = train(cfg, sampler, o);
  REQUIRE(r.failure.empty());
  REQUIRE(r.hash == clean.hash);
  REQUIRE(r.faults.subtree_restarts >= 1);
  // The two restarts sphere 1 made before giving up travel up with its exit.
  REQUIRE(r.faults.restarts >= 2);
}

TEST_CASE("a give-up counts only the restarts that happened", "[faults]") {
  const auto tokens = test::toy_corpus(4000, kSentence);
  const RunConfig cfg = tiny_run(3);
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  TreeOptions o = tree_opts(4, 2);
  o.faults.injections = {{Injection::crash, 0, 1}};
  o.policy.root_max_restarts = 0;  // the first failure of sphere 0 already ends the run
  const Run r = train(cfg, sampler, o);
  REQUIRE_THAT(r.failure, Catch::Contains("gave up"));
  REQUIRE(r.faults.restarts == 0);
}
