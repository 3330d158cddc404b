// The exact gradient sum: order independence, accuracy against a double sum, loud overflow.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "src/exact_sum.hpp"

using namespace cllm;

namespace {
ModelConfig micro_cfg() {
  ModelConfig c;
  c.vocab = 13, c.d_model = 8, c.layers = 1, c.n_heads = 2, c.context = 4;
  return c;
}
// Shard gradients with a wide dynamic range (1e-9 .. 1e3) and both signs.
std::vector<AlignedVector<float>> make_shards(const ParamLayout& L, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mant(-1.f, 1.f);
  std::uniform_int_distribution<int> ex(-30, 10);
  std::vector<AlignedVector<float>> out(n, AlignedVector<float>(L.total(), 0.f));
  for (auto& g : out)
    for (const auto& t : L.tensors())
      for (size_t i = 0; i < t.size; ++i) g[t.offset + i] = std::ldexp(mant(rng), ex(rng));
  return out;
}
ExactGrad fold(const ParamLayout& L, const std::vector<AlignedVector<float>>& shards,
               const std::vector<int>& order, const std::vector<int32_t>& grad_scale_exp) {
  ExactGrad acc(L);
  for (int s : order)
    acc.add_shard(L, shards[s].data(), grad_scale_exp, int(shards.size()), 0.25 * s, 10);
  return acc;
}
}  // namespace

TEST_CASE("every permutation and grouping of shards gives bit-identical sums", "[exact]") {
  ParamLayout L(micro_cfg());
  const int n = 7;
  auto shards = make_shards(L, n, 42);
  // Exponents from the true maxima, as the root would choose after one attempt.
  ExactGrad probe(L);
  auto grad_scale_exp0 = choose_grad_scale_exp(L, {}, n);
  for (auto& g : shards) probe.add_shard(L, g.data(), grad_scale_exp0, n, 0, 0);
  auto grad_scale_exp = choose_grad_scale_exp(L, probe.max_abs, n);

  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  const ExactGrad ref = fold(L, shards, order, grad_scale_exp);
  REQUIRE_FALSE(ref.overflow);
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::shuffle(order.begin(), order.end(), rng);
    // Random tree: split the shuffled order into groups, fold each, merge the groups in a
    // random order (like spheres folding children's sums).
    std::vector<ExactGrad> groups;
    size_t i = 0;
    while (i < order.size()) {
      size_t len = 1 + rng() % 3;
      std::vector<int> part(order.begin() + i, order.begin() + std::min(order.size(), i + len));
      groups.push_back(fold(L, shards, part, grad_scale_exp));
      i += len;
    }
    std::shuffle(groups.begin(), groups.end(), rng);
    ExactGrad total;
    for (auto& g : groups) total.merge(g);
    REQUIRE(total.sum == ref.sum);
    REQUIRE(total.max_abs == ref.max_abs);
    REQUIRE(total.loss_fixed == ref.loss_fixed);
    REQUIRE(total.tokens == ref.tokens);
    REQUIRE(total.shards == n);
  }
}

TEST_CASE("exact sum is as accurate as a double sum rounded to float", "[exact]") {
  ParamLayout L(micro_cfg());
  const int n = 64;
  auto shards = make_shards(L, n, 9);
  ExactGrad probe(L);
  for (auto& g : shards) probe.add_shard(L, g.data(), choose_grad_scale_exp(L, {}, n), n, 0, 1);
  auto grad_scale_exp = choose_grad_scale_exp(L, probe.max_abs, n);
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  ExactGrad total = fold(L, shards, order, grad_scale_exp);
  REQUIRE_FALSE(total.overflow);
  AlignedVector<float> mean(L.total());
  total.tokens = 1;  // compare sums, not means
  exact_to_mean_gradient(L, total, grad_scale_exp, mean.data());

  size_t worse_than_fp32 = 0, checked = 0;
  for (size_t t = 0; t < L.tensors().size(); ++t) {
    const auto& ti = L.tensors()[t];
    for (size_t i = 0; i < ti.size; ++i) {
      double ref = 0;
      float seq = 0;
      for (int s = 0; s < n; ++s) {
        ref += double(shards[s][ti.offset + i]);
        seq += shards[s][ti.offset + i];
      }
      const double err_exact = std::fabs(double(mean[ti.offset + i]) - ref);
      const double err_seq = std::fabs(double(seq) - ref);
      // Bounded by half a float ulp of the tensor's max (the grid is 2^-55 of it) plus the final
      // rounding to float, and never worse than the float32 sequential sum except where both
      // are within the grid resolution.
      const double grid = std::ldexp(1.0, -grad_scale_exp[t]) * n;
      REQUIRE(err_exact <= std::fabs(ref) * 0x1p-24 + grid);
      if (err_exact > err_seq + grid) ++worse_than_fp32;
      ++checked;
    }
  }
  REQUIRE(checked > 100);
  REQUIRE(worse_than_fp32 == 0);
}

TEST_CASE("a value that does not fit the grid is reported as overflow, never wrapped", "[exact]") {
  ParamLayout L(micro_cfg());
  AlignedVector<float> g(L.total(), 0.f);
  g[L.tensors()[0].offset] = 1.0f;
  auto grad_scale_exp = choose_grad_scale_exp(L, {}, 4);  // no history: assumes |g| < 2^8
  ExactGrad ok(L);
  ok.add_shard(L, g.data(), grad_scale_exp, 4, 1.0, 1);
  REQUIRE_FALSE(ok.overflow);
  g[L.tensors()[0].offset] = 1e6f;  // 2^20 > 2^8 * 2^3 headroom
  ExactGrad bad(L);
  bad.add_shard(L, g.data(), grad_scale_exp, 4, 1.0, 1);
  REQUIRE(bad.overflow);
  REQUIRE(bad.max_abs[0] == 1e6f);  // the exact max still travels up
  ExactGrad merged = ok;
  merged.merge(bad);
  REQUIRE(merged.overflow);
  // Exponents chosen from the reported max fit.
  auto wider = choose_grad_scale_exp(L, merged.max_abs, 4);
  ExactGrad next_attempt(L);
  next_attempt.add_shard(L, g.data(), wider, 4, 1.0, 1);
  REQUIRE_FALSE(next_attempt.overflow);
}

TEST_CASE("non-finite gradients and losses are flagged", "[exact]") {
  ParamLayout L(micro_cfg());
  AlignedVector<float> g(L.total(), 0.f);
  auto grad_scale_exp = choose_grad_scale_exp(L, {}, 1);
  ExactGrad a(L);
  a.add_shard(L, g.data(), grad_scale_exp, 1, std::nan(""), 1);
  REQUIRE(a.nonfinite);
  g[3] = INFINITY;
  ExactGrad b(L);
  b.add_shard(L, g.data(), grad_scale_exp, 1, 1.0, 1);
  REQUIRE(b.nonfinite);
}

TEST_CASE("the vectorised fold gives exactly the portable fold's integers", "[exact]") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> mant(-1.f, 1.f);
  std::uniform_int_distribution<int> ex(-40, 12);
  for (size_t n :
       {size_t(0), size_t(1), size_t(15), size_t(16), size_t(17), size_t(1000), size_t(4099)}) {
    AlignedVector<float> g(n);
    for (auto& x : g) x = std::ldexp(mant(rng), ex(rng));
    if (n > 20) g[7] = 0x1p40f, g[9] = -0x1p40f;  // beyond the limit: clamped
    if (n > 20) g[11] = 0.5f * std::ldexp(1.0f, -20), g[12] = 1.5f * std::ldexp(1.0f, -20);  // ties
    std::vector<int64_t> a(n, 5), b(n, 5);
    float mxa = 0, mxb = 0;
    bool bada = false, badb = false;
    const float s = std::ldexp(1.0f, 20), lim = std::ldexp(1.0f, 50);
    detail::fold_tensor(g.data(), a.data(), n, s, lim, false, mxa, bada);
    detail::fold_tensor_portable(g.data(), b.data(), n, s, lim, false, mxb, badb);
    REQUIRE(a == b);
    std::vector<int64_t> c(n, 99), d(n, -7);  // store mode ignores what was there
    detail::fold_tensor(g.data(), c.data(), n, s, lim, true, mxa, bada);
    detail::fold_tensor_portable(g.data(), d.data(), n, s, lim, true, mxb, badb);
    REQUIRE(c == d);
    for (size_t i = 0; i < n; ++i) REQUIRE(a[i] == c[i] + 5);
    REQUIRE(mxa == mxb);
    REQUIRE(bada == badb);
    if (n > 20) {
      g[3] = NAN;
      detail::fold_tensor(g.data(), a.data(), n, s, lim, false, mxa, bada);
      REQUIRE(bada);
    }
  }
}

TEST_CASE("a loss beyond the fixed-point range refuses the step instead of attempting it again",
          "[exact]") {
  ParamLayout L(micro_cfg());
  AlignedVector<float> g(L.total(), 0.f);
  const auto grad_scale_exp = choose_grad_scale_exp(L, {}, 4);
  ExactGrad a(L);
  a.add_shard(L, g.data(), grad_scale_exp, 4, 1e9, 1);  // fine: 1e9 * 2^16 < 2^60
  REQUIRE_FALSE(a.nonfinite);
  REQUIRE_FALSE(a.overflow);
  ExactGrad b(L);
  b.add_shard(L, g.data(), grad_scale_exp, 4, 1e14,
              1);  // 1e14 * 2^16 > 2^60: cannot be summed exactly
  REQUIRE(b.nonfinite);
  REQUIRE_FALSE(b.overflow);  // a wider grid would not help: no other attempt
  // Four shards at the per-shard limit never wrap when summed.
  ExactGrad c(L);
  for (int k = 0; k < 4; ++k) c.add_shard(L, g.data(), grad_scale_exp, 4, 1.7e13, 1);
  REQUIRE_FALSE(c.nonfinite);
  REQUIRE(c.loss_sum() == Approx(4 * 1.7e13).epsilon(1e-12));
}
