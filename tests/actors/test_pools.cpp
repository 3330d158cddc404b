// The thread-pool baselines (mutex, barrier) compute exactly what the reference loop and the
// actor tree compute, for any number of workers, start and stop cleanly, survive a failing
// worker and account for every shard.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "actors/tree_backend.hpp"
#include "src/pool_backends.hpp"
#include "test_util.hpp"

using namespace cllm;

TEST_CASE("mutex and barrier pools give the reference loop's weights, like the tree", "[pools]") {
  const auto tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig cfg = test::spheres_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  const std::string expected = test::reference_sha(cfg, sampler);

  for (int workers : {1, 2, 13}) {  // 13 workers > 12 shards: one thread stays idle
    INFO("workers " << workers);
    {
      TreeOptions opt;
      opt.spheres = workers, opt.fanout = 12, opt.threads = 2;
      TreeBackend tree(cfg, sampler, opt);
      REQUIRE(test::train_with(tree, cfg) == expected);
    }
    MutexBackend mutex(cfg, sampler, workers);
    REQUIRE(mutex.name() == "mutex");
    REQUIRE(mutex.spheres() == workers);
    REQUIRE(test::train_with(mutex, cfg) == expected);

    BarrierBackend barrier(cfg, sampler, workers);
    REQUIRE(barrier.name() == "barrier");
    REQUIRE(barrier.spheres() == workers);
    REQUIRE(test::train_with(barrier, cfg) == expected);
  }
}

TEST_CASE("pools built by the factory agree for odd worker counts", "[pools]") {
  const auto tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig cfg = test::spheres_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  const std::string expected = test::reference_sha(cfg, sampler);
  // 31 workers own more slices than there are blocks: some own nothing.
  REQUIRE(Slicing(ParamLayout(cfg.model).total(), 31).blocks() < 31);
  for (const char* kind : {"mutex", "barrier"}) {
    for (int workers : {3, 5, 12, 31}) {
      INFO(kind << " workers " << workers);
      auto b = make_pool_backend(kind, cfg, sampler, workers);
      REQUIRE(b->name() == kind);
      REQUIRE(test::train_with(*b, cfg) == expected);
    }
  }
}

TEST_CASE("pools start and stop cleanly with or without steps", "[pools]") {
  const auto tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig cfg = test::spheres_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  for (int workers : {1, 2, 13, 64}) {
    { MutexBackend m(cfg, sampler, workers); }
    { BarrierBackend b(cfg, sampler, workers); }
  }
  // Destroyed right after a step.
  for (const char* kind : {"mutex", "barrier"}) {
    auto b = make_pool_backend(kind, cfg, sampler, 3);
    TrainState st(cfg);
    const StepWork w = st.next_work();
    REQUIRE(b->run_step(w, st.weights()).at(0).shards == cfg.batch.shards());
  }
}

TEST_CASE("each pool worker runs its own slice's work, all of them once", "[pools]") {
  const auto tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig cfg = test::spheres_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  for (const char* kind : {"mutex", "barrier"}) {
    INFO(kind);
    auto b = make_pool_backend(kind, cfg, sampler, 4);
    for (int round = 0; round < 3; ++round) {
      std::vector<std::thread::id> ran(4);
      std::vector<int> calls(4, 0);
      b->run_slices(4, [&](int k) {
        ran[size_t(k)] = std::this_thread::get_id();
        ++calls[size_t(k)];
      });
      REQUIRE(calls == std::vector<int>(4, 1));
      for (int k = 0; k < 4; ++k) {
        REQUIRE(ran[size_t(k)] != std::this_thread::get_id());
        for (int j = 0; j < k; ++j) REQUIRE(ran[size_t(j)] != ran[size_t(k)]);
      }
    }
  }
}

TEST_CASE("the pool factory refuses unknown kinds and empty pools", "[pools]") {
  const auto tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig cfg = test::spheres_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  REQUIRE_THROWS_AS(make_pool_backend("spinlock", cfg, sampler, 2), ConfigError);
  REQUIRE_THROWS_AS(make_pool_backend("mutex", cfg, sampler, 0), ConfigError);
  REQUIRE_THROWS_AS(make_pool_backend("barrier", cfg, sampler, -1), ConfigError);
  REQUIRE_THROWS_AS(MutexBackend(cfg, sampler, 0), ConfigError);
  REQUIRE_THROWS_AS(BarrierBackend(cfg, sampler, 0), ConfigError);
}

TEST_CASE("a failing worker becomes BackendFailure, and the pool stays usable", "[pools]") {
  const auto tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig cfg = test::spheres_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  const std::string expected = test::reference_sha(cfg, sampler);
  for (const char* kind : {"mutex", "barrier"}) {
    for (int workers : {1, 4, 13}) {
      INFO(kind << " workers " << workers);
      auto b = make_pool_backend(kind, cfg, sampler, workers);
      TrainState st(cfg);
      StepWork bad = st.next_work();
      bad.grad_scale_exp
          .pop_back();  // ExactGrad::add_shard throws: one exponent per tensor required
      REQUIRE_THROWS_AS(b->run_step(bad, st.weights()), BackendFailure);
      REQUIRE_THROWS_AS(b->run_step(bad, st.weights()), BackendFailure);
      REQUIRE(test::train_with(*b, cfg) == expected);
    }
  }
}

TEST_CASE("pool statistics and timings count every shard", "[pools]") {
  const auto tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig cfg = test::spheres_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  for (const char* kind : {"mutex", "barrier"}) {
    for (int workers : {1, 5, 13}) {
      INFO(kind << " workers " << workers);
      auto b = make_pool_backend(kind, cfg, sampler, workers);
      TrainState st(cfg);
      double compute = 0, fold = 0, reduce = 0, wall = 0;
      int64_t steps = 0;
      while (st.step() < cfg.steps) {
        const StepWork w = st.next_work();
        const auto t0 = std::chrono::steady_clock::now();
        const StepSums& total = b->run_step(w, st.weights());
        const double step_ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count();
        for (const ExactGrad& slice : total) REQUIRE(slice.shards == cfg.batch.shards());
        const StepTiming t = b->last_timing();
        REQUIRE(t.spheres == std::min(workers, cfg.batch.shards()));
        REQUIRE(t.compute_ms > 0);
        REQUIRE(t.fold_ms > 0);  // every shard is folded into the exact sum
        // Time inside the workers cannot exceed the workers' share of the step's wall time.
        REQUIRE(t.compute_ms + t.fold_ms + t.reduce_ms <= t.spheres * step_ms + 1.0);
        compute += t.compute_ms, fold += t.fold_ms, reduce += t.reduce_ms, wall += step_ms;
        ++steps;
        REQUIRE(st.apply(total, w, b->slice_runner()).kind != StepOutcome::nonfinite);
      }
      const auto stats = b->sphere_stats();
      REQUIRE(stats.size() == size_t(workers));
      int64_t shards = 0;
      double s_compute = 0, s_fold = 0, s_reduce = 0;
      for (size_t i = 0; i < stats.size(); ++i) {
        REQUIRE(stats[i].id == int(i));
        REQUIRE(stats[i].level == 0);
        REQUIRE(stats[i].parent == -1);
        REQUIRE(stats[i].group == int(i) % 12);
        REQUIRE(stats[i].restarts == 0);
        // Idle time (done with its shards, waiting for the slowest) lies inside the steps.
        REQUIRE(stats[i].wait_ms <= wall + 1.0);
        // Static assignment: thread i computes shards i, i + workers, ...
        const int per_step = i < size_t(cfg.batch.shards())
                                 ? (cfg.batch.shards() - int(i) + workers - 1) / workers
                                 : 0;
        REQUIRE(stats[i].shards == int64_t(per_step) * steps);
        shards += stats[i].shards;
        s_compute += stats[i].compute_ms;
        s_fold += stats[i].fold_ms;
        s_reduce += stats[i].reduce_ms;
      }
      REQUIRE(shards == int64_t(cfg.batch.shards()) * steps);
      REQUIRE(s_compute == Approx(compute));
      REQUIRE(s_fold == Approx(fold));
      REQUIRE(s_reduce == Approx(reduce).margin(1e-9));
    }
  }
}

TEST_CASE("the generation barrier is reusable and can be broken", "[pools]") {
  // (Catch2 assertions are not thread-safe: the threads only count, the main thread checks.)
  GenerationBarrier bar(3);
  std::atomic<int> arrivals{0}, failures{0}, order_errors{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t)
    ts.emplace_back([&] {
      for (int r = 0; r < 100; ++r) {
        arrivals.fetch_add(1);
        if (!bar.arrive_and_wait()) failures.fetch_add(1);
        // Everyone of round r arrived before anyone leaves it.
        if (arrivals.load() < 2 * (r + 1)) order_errors.fetch_add(1);
      }
    });
  for (int r = 0; r < 100; ++r)
    if (!bar.arrive_and_wait()) failures.fetch_add(1);
  for (auto& t : ts) t.join();
  REQUIRE(arrivals.load() == 200);
  REQUIRE(failures.load() == 0);
  REQUIRE(order_errors.load() == 0);

  GenerationBarrier lone(2);
  std::atomic<bool> released{true};
  std::thread waiter([&] { released = lone.arrive_and_wait(); });
  lone.wait_for_arrivals(1);  // the waiter is blocked inside: breaking must wake it
  lone.break_barrier();
  waiter.join();
  REQUIRE_FALSE(released.load());
  REQUIRE_FALSE(lone.arrive_and_wait());
}
