// The actor tree computes exactly what the plain reference loop computes, for every sphere
// count, fan-out and thread count.
#include <catch2/catch.hpp>
#include <string>

#include "actors/tree_backend.hpp"
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
  test::train_with(tree, cfg);
  const auto stats = tree.worker_stats();
  REQUIRE(stats.size() == 13);
  int64_t shards = 0;
  for (size_t i = 0; i < stats.size(); ++i) {
    REQUIRE(stats[i]["id"] == int(i));
    REQUIRE(stats[i]["group"] == int(i) % 12);
    if (i > 0) REQUIRE(stats[i]["parent"] == (int(i) - 1) / 3);
    shards += stats[i]["shards"].get<int64_t>();
  }
  REQUIRE(shards == int64_t(cfg.batch.shards()) * cfg.steps);
  REQUIRE(tree.fault_counters()["restarts"] == 0);
}
