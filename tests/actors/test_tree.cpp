// The actor tree computes exactly what the plain reference loop computes, for every sphere
// count, fan-out and thread count.
#include <catch2/catch.hpp>
#include <string>

#include "actors/tree_backend.hpp"
#include "src/sha256.hpp"

using namespace cllm;

namespace {
std::vector<int32_t> toy_corpus(size_t n) {
  std::string text;
  while (text.size() < n) text += "In the beginning was the word, and the word was with spheres. ";
  return std::vector<int32_t>(text.begin(), text.begin() + n);
}
RunConfig tiny_run() {
  RunConfig c;
  c.model = model_preset("tiny");
  c.model.context = 16;
  c.batch.batch = 12, c.batch.micro_batch = 1, c.batch.context = 16;
  c.optim.lr = 3e-3, c.optim.warmup = 1, c.optim.total_steps = 3;
  c.steps = 3;
  return c;
}
std::string train_with(Backend& b, const RunConfig& cfg) {
  TrainState st(cfg);
  while (st.step() < cfg.steps) {
    const StepWork w = st.next_work();
    const ExactGrad total = b.run_step(w, st.weights());
    REQUIRE(st.apply(total, w).kind != StepOutcome::nonfinite);
  }
  return weights_sha256(st.layout(), st.weights()->data());
}
}  // namespace

TEST_CASE("the tree's weights equal the reference loop's for any shape", "[tree]") {
  const auto tokens = toy_corpus(4000);
  const RunConfig cfg = tiny_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  TrainState ref(cfg);
  train_reference(ref, sampler, cfg.steps);
  const std::string expected = weights_sha256(ref.layout(), ref.weights()->data());

  for (int threads : {1, 2}) {
    for (int fanout : {2, 3, 12}) {
      for (int spheres : {1, 2, 12, 13, 157, 1741}) {
        if (threads == 1 && spheres > 157 && fanout != 12) continue;  // keep the test short
        TreeOptions opt;
        opt.spheres = spheres, opt.fanout = fanout, opt.threads = threads;
        TreeBackend tree(cfg, sampler, opt);
        INFO("spheres " << spheres << " fanout " << fanout << " threads " << threads);
        REQUIRE(train_with(tree, cfg) == expected);
      }
    }
  }
}

TEST_CASE("per-sphere statistics cover every sphere and every shard", "[tree]") {
  const auto tokens = toy_corpus(4000);
  const RunConfig cfg = tiny_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  TreeOptions opt;
  opt.spheres = 13, opt.fanout = 3, opt.threads = 2;
  TreeBackend tree(cfg, sampler, opt);
  train_with(tree, cfg);
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
