// The actor tree computes exactly what the plain reference loop computes, for every sphere
// count, fan-out and thread count.
#include <catch2/catch.hpp>
#include <string>

#include "actors/tree_backend.hpp"
#include "src/exact_sum.hpp"
#include "test_util.hpp"

using namespace cllm;

TEST_CASE("the tree's weights equal the reference loop's for any shape", "[tree]") {
  const auto tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig cfg = test::spheres_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  const std::string expected = test::reference_sha(cfg, sampler);

  for (int threads : {1, 2}) {
    for (int fanout : {2, 3, 12}) {
      for (int spheres : {1, 2, 12, 13, 157, 1741}) {
        if (threads == 1 && spheres > 157 && fanout != 12) continue;  // keep the test short
        TreeOptions opt;
        opt.spheres = spheres, opt.fanout = fanout, opt.threads = threads;
        test::patient(opt.policy);
        TreeBackend tree(cfg, sampler, opt);
        INFO("spheres " << spheres << " fanout " << fanout << " threads " << threads);
        REQUIRE(test::train_with(tree, cfg) == expected);
      }
    }
  }
}

TEST_CASE("per-sphere statistics cover every sphere and every shard", "[tree]") {
  const auto tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig cfg = test::spheres_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  TreeOptions opt;
  opt.spheres = 13, opt.fanout = 3, opt.threads = 2;
  test::patient(opt.policy);  // no deadline kill, however slow the machine: restarts stay 0
  TreeBackend tree(cfg, sampler, opt);
  TrainState st(cfg);
  FaultCounts faults;
  test::train_steps(tree, st, cfg.steps, &faults);
  const auto stats = tree.sphere_stats();
  REQUIRE(stats.size() == 13);
  int64_t shards = 0;
  for (size_t i = 0; i < stats.size(); ++i) {
    REQUIRE(stats[i].known);
    REQUIRE(stats[i].id == int(i));
    REQUIRE(stats[i].group == int(i) % 12);
    if (i > 0) REQUIRE(stats[i].parent == (int(i) - 1) / 3);
    shards += stats[i].shards;
  }
  REQUIRE(shards == int64_t(cfg.batch.shards()) * cfg.steps);
  REQUIRE(faults.restarts == 0);
}

TEST_CASE("the tree's weights are the same with shards on the leaves", "[tree]") {
  const auto tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig cfg = test::spheres_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  const std::string expected = test::reference_sha(cfg, sampler);
  // {2000, 1}: a chain, planned and torn down without recursion (the million-sphere chain is an
  // e2e test that runs alone).
  for (const auto& [spheres, fanout] :
       {std::pair{1, 12}, {2, 2}, {13, 3}, {157, 12}, {1741, 12}, {2000, 1}}) {
    TreeOptions opt;
    opt.spheres = spheres, opt.fanout = fanout, opt.threads = 2, opt.placement = Placement::leaves;
    TreeBackend tree(cfg, sampler, opt);
    INFO("spheres " << spheres << " fanout " << fanout);
    REQUIRE(test::train_with(tree, cfg) == expected);
    // Only leaves computed.
    int64_t inner_shards = 0;
    for (const auto& s : tree.sphere_stats())
      if (spheres > 1 && !Topology(spheres, fanout).position(s.id).children.empty())
        inner_shards += s.shards;
    REQUIRE(inner_shards == 0);
  }
}

TEST_CASE("the tree's weights are the same for any number of owners", "[tree][owners]") {
  const auto tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig cfg = test::spheres_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  const std::string expected = test::reference_sha(cfg, sampler);
  const int blocks = int(Slicing(ParamLayout(cfg.model).total(), 1).blocks());
  for (int owners : {1, 2, 3, 7, blocks + 3}) {
    for (int spheres : {1, 5}) {
      TreeOptions opt;
      opt.spheres = spheres, opt.fanout = 2, opt.threads = 2, opt.owners = owners;
      test::patient(opt.policy);
      TreeBackend tree(cfg, sampler, opt);
      INFO("owners " << owners << " spheres " << spheres);
      TrainState st(cfg);
      test::train_steps(tree, st, cfg.steps);
      REQUIRE(test::weights_hash(st) == expected);
      // The step's sums are the owners' slices: no whole-vector sum came up the tree.
      const StepSums& sums = tree.run_step(st.next_work(), st.weights());
      REQUIRE(sums.size() == size_t(owners));
      for (const ExactGrad& s : sums) REQUIRE(s.shards == cfg.batch.shards());
    }
  }
}

TEST_CASE("an owner that fails ends the step cleanly and keeps the last state", "[tree][owners]") {
  const auto tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig cfg = test::spheres_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  TreeOptions opt;
  opt.spheres = 3, opt.fanout = 2, opt.threads = 2, opt.owners = 3;
  test::patient(opt.policy);
  TreeBackend tree(cfg, sampler, opt);
  TrainState st(cfg);
  test::train_steps(tree, st, 1);
  const std::string before = test::weights_hash(st);
  StepWork bad = st.next_work();
  bad.grad_scale_exp.pop_back();  // the owners' fold throws: one exponent per tensor required
  try {
    tree.run_step(bad, st.weights());
    FAIL("the step should have failed");
  } catch (const BackendFailure& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("owner of slice"));
  }
  REQUIRE(st.step() == 1);
  REQUIRE(test::weights_hash(st) == before);
}
