// A metrics.jsonl row's cluster figures: each node's process (CPU time, memory) as it answered its
// last request of the step, and nothing of the kind in a row of a run without nodes.
#include <catch2/catch.hpp>

#include "run/observers.hpp"

using namespace cllm;

TEST_CASE("metrics rows carry each node's CPU time and memory, only in cluster runs",
          "[cluster][metrics]") {
  StepRecord r;
  r.step = 3, r.last_step = 10;
  const nlohmann::json alone = metrics_row(r);
  CHECK(!alone.contains("node_usage"));
  CHECK(!alone.contains("nodes"));

  // Node 1 answered twice in the step (shards dealt to it again): its later figures count.
  StepTiming first, again, other;
  first.nodes = {NodeUsage{1, 1.0, 30.0}};
  again.nodes = {NodeUsage{1, 2.00049, 31.04}};
  other.nodes = {NodeUsage{2, 0.5, 28.0}};
  r.timing += first;
  r.timing += other;
  r.timing += again;
  r.members.nodes = 2, r.members.spheres = 3;
  const nlohmann::json row = metrics_row(r);
  REQUIRE(row.contains("node_usage"));
  const nlohmann::json expected = nlohmann::json::parse(
      R"([{"node": 1, "cpu_s": 2.0, "rss_mb": 31.0}, {"node": 2, "cpu_s": 0.5, "rss_mb": 28.0}])");
  CHECK(row["node_usage"] == expected);
}
