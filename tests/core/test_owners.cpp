// Owners of parameter slices: the flat vector cut into fixed blocks, slices of whole blocks, and
// a step whose sums, norm and AdamW are computed per slice gives the same bits for any number of
// owners, with block boundaries inside tensors.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "src/exact_sum.hpp"
#include "src/sha256.hpp"
#include "src/training.hpp"
#include "test_util.hpp"

using namespace cllm;

namespace {
const char* const kSentence = "owners hold slices of whole blocks; the sum is exact. ";

// 4 shards of two 32-token sequences per step, 4 steps; a clip low enough to bite, so that the
// global norm (and how it is combined) decides the update.
RunConfig owners_run() {
  RunConfig c = test::tiny_run(/*context=*/32, /*batch=*/8, /*micro_batch=*/2, /*steps=*/4,
                               /*warmup=*/1);
  c.optim.clip = 0.05;
  return c;
}

// One shard gradient folded into every slice, as owners do.
StepSums fold_sliced(const TrainState& st, ShardWorker& w, const StepWork& work, int owners) {
  const Slicing slicing(st.layout().total(), owners);
  StepSums sums(static_cast<size_t>(owners));
  for (int k = 0; k < owners; ++k)
    sums[size_t(k)].reset(st.layout(), slicing.begin(k), slicing.end(k));
  for (int s = 0; s < work.shards; ++s) {
    w.compute_gradient(st.weights()->data(), work, s);
    for (auto& slice : sums) w.fold_into(work, slice);
  }
  return sums;
}

struct Trained {
  std::string sha;
  std::vector<double> norms;
};

// Trains cfg.steps steps with `owners` slices; `runner` spreads the per-slice work.
Trained train_sliced(const RunConfig& cfg, const WindowSampler& sampler, int owners,
                     const SliceRunner& runner) {
  TrainState st(cfg);
  ShardWorker w(cfg, sampler);
  Trained out;
  while (st.step() < cfg.steps) {
    const StepWork work = st.next_work();
    const StepSums sums = fold_sliced(st, w, work, owners);
    const StepOutcome o = st.apply(sums, work, runner);
    REQUIRE(o.kind != StepOutcome::nonfinite);
    if (o.kind == StepOutcome::applied) out.norms.push_back(o.grad_norm);
  }
  out.sha = test::weights_hash(st);
  return out;
}

// Every slice at once, one thread each, in reverse order of starting.
void threaded(int n, const std::function<void(int)>& body) {
  std::vector<std::thread> ts;
  for (int k = n - 1; k >= 0; --k) ts.emplace_back([&body, k] { body(k); });
  for (auto& t : ts) t.join();
}
}  // namespace

TEST_CASE("slices are contiguous runs of whole blocks covering the vector", "[owners]") {
  const ParamLayout L(owners_run().model);
  for (int owners : {1, 2, 3, 7, 1000}) {
    const Slicing s(L.total(), owners);
    REQUIRE(s.blocks() == (L.total() + kSliceBlock - 1) / kSliceBlock);
    REQUIRE(s.begin(0) == 0);
    REQUIRE(s.end(owners - 1) == L.total());
    for (int k = 0; k < owners; ++k) {
      REQUIRE(s.begin(k) <= s.end(k));
      REQUIRE(s.begin(k) % kSliceBlock == 0);
      if (k + 1 < owners) REQUIRE(s.end(k) == s.begin(k + 1));
    }
  }
  // The blocks do not follow the tensors: some boundary of 7 owners falls inside a tensor.
  const Slicing s(L.total(), 7);
  bool inside = false;
  for (int k = 1; k < 7; ++k)
    for (const auto& t : L.tensors())
      inside |= s.begin(k) > t.offset && s.begin(k) < t.offset + t.size;
  REQUIRE(inside);
}

TEST_CASE("a step applied from 1, 2, 3, 7 or more owners than blocks gives the same bits",
          "[owners]") {
  const auto tokens = test::toy_corpus(5000, kSentence);
  const RunConfig cfg = owners_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  const std::string reference = test::reference_sha(cfg, sampler);
  const Trained one = train_sliced(cfg, sampler, 1, {});
  REQUIRE(one.sha == reference);
  // The clip bit in every step, so the norm decided every update.
  for (double n : one.norms) REQUIRE(n > cfg.optim.clip);
  const int blocks = int(Slicing(ParamLayout(cfg.model).total(), 1).blocks());
  for (int owners : {2, 3, 7, blocks + 5}) {
    INFO("owners " << owners);
    const Trained serial = train_sliced(cfg, sampler, owners, {});
    const Trained parallel = train_sliced(cfg, sampler, owners, threaded);
    REQUIRE(serial.sha == reference);
    REQUIRE(parallel.sha == reference);
    REQUIRE(serial.norms == one.norms);  // bit for bit (double ==)
    REQUIRE(parallel.norms == one.norms);
  }
}

TEST_CASE("a block's norm is the same whichever slice holds it", "[owners]") {
  const auto tokens = test::toy_corpus(5000, kSentence);
  const RunConfig cfg = owners_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  TrainState st(cfg);
  ShardWorker w(cfg, sampler);
  const StepWork work = st.next_work();
  const StepSums whole = fold_sliced(st, w, work, 1);
  const Slicing one(st.layout().total(), 1);
  std::vector<double> ref(one.blocks());
  block_norms(st.layout(), whole[0], work.grad_scale_exp, whole[0].tokens, ref.data());
  REQUIRE(std::count_if(ref.begin(), ref.end(), [](double x) { return x > 0; }) > 1);
  for (int owners : {2, 3, 7}) {
    const StepSums sliced = fold_sliced(st, w, work, owners);
    const Slicing s(st.layout().total(), owners);
    std::vector<double> got(s.blocks(), -1.0);
    for (int k = 0; k < owners; ++k) {
      block_norms(st.layout(), sliced[size_t(k)], work.grad_scale_exp, whole[0].tokens,
                  got.data() + s.first_block(k));
      // The slice's integers are the whole sum's, element for element.
      const auto& sum = sliced[size_t(k)].sum;
      REQUIRE(
          std::equal(sum.begin(), sum.end(), whole[0].sum.begin() + std::ptrdiff_t(s.begin(k))));
    }
    REQUIRE(got == ref);
  }
}

TEST_CASE("whole partial sums folded into slices equal slices folded shard by shard", "[owners]") {
  const auto tokens = test::toy_corpus(5000, kSentence);
  const RunConfig cfg = owners_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  TrainState st(cfg);
  ShardWorker w(cfg, sampler);
  const StepWork work = st.next_work();
  // Two "nodes": shards {0, 2} and {1, 3} as whole-vector partial sums.
  ExactGrad a(st.layout()), b(st.layout());
  for (int s = 0; s < work.shards; ++s) w.compute(st.weights()->data(), work, s, s % 2 ? b : a);
  const StepSums direct = fold_sliced(st, w, work, 3);
  const Slicing slicing(st.layout().total(), 3);
  for (int k = 0; k < 3; ++k) {
    ExactGrad slice;
    slice.reset(st.layout(), slicing.begin(k), slicing.end(k));
    slice.merge_range(b);
    slice.merge_range(a);
    REQUIRE(slice.sum == direct[size_t(k)].sum);
    REQUIRE(slice.loss_fixed == direct[size_t(k)].loss_fixed);
    REQUIRE(slice.tokens == direct[size_t(k)].tokens);
    REQUIRE(slice.shards == direct[size_t(k)].shards);
  }
  // A slice it does not cover is refused.
  ExactGrad narrow;
  narrow.reset(st.layout(), slicing.begin(1), slicing.end(1));
  w.fold_into(work, narrow);
  ExactGrad other;
  other.reset(st.layout(), slicing.begin(0), slicing.end(0));
  REQUIRE_THROWS_AS(other.merge_range(narrow), std::invalid_argument);
}

TEST_CASE("sums of the wrong ranges are refused", "[owners]") {
  const auto tokens = test::toy_corpus(5000, kSentence);
  const RunConfig cfg = owners_run();
  WindowSampler sampler(tokens, cfg.batch.context, sampler_seed(cfg.seed));
  TrainState st(cfg);
  ShardWorker w(cfg, sampler);
  const StepWork work = st.next_work();
  StepSums sums = fold_sliced(st, w, work, 3);
  std::swap(sums[0], sums[1]);
  REQUIRE_THROWS_AS(st.apply(sums, work), std::logic_error);
  REQUIRE(st.step() == 0);
}
