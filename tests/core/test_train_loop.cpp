// The training loop's record of a step covers every attempt of it: when a step takes a second
// attempt to widen the exact-sum grid, what happened in the first attempt (a lost node, bytes sent)
// is still reported in that step's record, not dropped with the attempt.
#include <catch2/catch.hpp>
#include <vector>

#include "src/pool_backends.hpp"
#include "src/train_loop.hpp"
#include "test_util.hpp"

using namespace cllm;

namespace {

// The mutex pool, except that its first attempt at the second step claims an overflow (so the
// loop makes attempt 1) and reports a node lost on the way and some bytes sent.
class LosesANodeThenTriesAgain final : public Backend {
 public:
  LosesANodeThenTriesAgain(const RunConfig& run, const WindowSampler& sampler)
      : inner_(run, sampler, 2) {}
  std::string name() const override { return "test"; }
  int spheres() const override { return inner_.spheres(); }
  const StepSums& run_step(const StepWork& work, const WeightsRef& weights) override {
    StepSums& g = sums_ = inner_.run_step(work, weights);
    timing_ = inner_.last_timing();
    timing_.bytes_sent = 10;
    faults_ = {};
    if (work.step == 1 && !lost_) {
      lost_ = true;
      g[0].overflow = true;
      timing_.bytes_sent = 1000;
      FaultEvent e;
      e.kind = FaultEvent::node_lost, e.step = 1, e.reason = "node b: its connection was lost";
      faults_.events.push_back(e);
      ++faults_.nodes_lost;
    }
    return g;
  }
  void run_slices(int n, const std::function<void(int)>& body) override {
    inner_.run_slices(n, body);
  }
  StepTiming last_timing() const override { return timing_; }
  FaultCounts last_faults() const override { return faults_; }
  std::vector<SphereStats> sphere_stats() override { return inner_.sphere_stats(); }

 private:
  MutexBackend inner_;
  StepSums sums_;
  bool lost_ = false;
  StepTiming timing_;
  FaultCounts faults_;
};

struct Records final : StepObserver {
  std::vector<StepRecord> all;
  void on_step(const StepRecord& r) override { all.push_back(r); }
};

}  // namespace

TEST_CASE("a step's attempt 1 still reports what its attempt 0 did", "[loop]") {
  const auto tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig cfg = test::spheres_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  LosesANodeThenTriesAgain backend(cfg, sampler);
  TrainState state(cfg);
  StopToken stop;
  TrainingLoop loop(state, backend, nullptr, 0, stop);
  Records records;
  const LoopResult res = loop.run({&records});
  REQUIRE(res.exit_code == 0);
  REQUIRE(records.all.size() == size_t(cfg.steps));
  const StepRecord& second = records.all[1];
  CHECK(second.attempt == 1);
  CHECK(second.faults.nodes_lost == 1);
  REQUIRE(second.faults.events.size() == 1);
  CHECK(second.faults.events[0].kind == FaultEvent::node_lost);
  CHECK(second.timing.bytes_sent == 1010);  // both attempts' transfers
  CHECK(records.all[0].faults.events.empty());
  CHECK(records.all[2].timing.bytes_sent == 10);
  CHECK(res.attempts_after_first == 1);
}
