// Finite-difference checks of Model's hand-written backward pass, in double precision, on a tiny
// model built here; plus float/double agreement and API behaviour (forward vs forward_backward,
// workspace reuse, partial batches, invalid token ids).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "src/aligned.hpp"
#include "src/config.hpp"
#include "src/model.hpp"
#include "src/params.hpp"
#include "src/rng.hpp"

namespace {

using cllm::AlignedVector;
using cllm::Model;
using cllm::ModelConfig;
using cllm::ParamLayout;

// vocab 11, d 8, 2 layers, 2 heads, context 6; sequences of 5 tokens, so wpe row 5 is unused.
ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab = 11;
  c.d_model = 8;
  c.layers = 2;
  c.n_heads = 2;
  c.context = 6;
  return c;
}
constexpr int kContext = 5;
constexpr int kBatch = 2;

// GPT-2 initialisation plus N(0, 0.2^2) noise on every real entry (padding stays zero), so that
// LayerNorm gains, biases and attention patterns are all far from their degenerate start.
AlignedVector<double> noisy_params(const ParamLayout& layout, uint64_t seed) {
  AlignedVector<double> p(layout.total());
  cllm::init_parameters<double>(layout, seed, p.data());
  const uint64_t key = cllm::hash_words(seed, 0x9c4eULL);
  for (const auto& t : layout.tensors())
    for (size_t i = 0; i < t.size; ++i) p[t.offset + i] += 0.2 * cllm::normal_at(key, t.offset + i);
  return p;
}

std::vector<int32_t> random_tokens(int batch, int context, int vocab, uint64_t seed) {
  std::vector<int32_t> tok(size_t(batch) * (context + 1));
  for (size_t i = 0; i < tok.size(); ++i)
    tok[i] = int32_t(cllm::hash_words(seed, 0x7031ULL, i) % uint64_t(vocab));
  return tok;
}

template <class To, class From>
AlignedVector<To> convert(const AlignedVector<From>& v) {
  AlignedVector<To> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = To(v[i]);
  return r;
}

double rel_norm_diff(const double* a, const double* ref, size_t n) {
  double d = 0, r = 0;
  for (size_t i = 0; i < n; ++i) d += (a[i] - ref[i]) * (a[i] - ref[i]), r += ref[i] * ref[i];
  return std::sqrt(d) / std::sqrt(r);
}

// Indices of `t` to check: all of a small tensor, else a fixed pseudo-random sample.
std::vector<size_t> entries_to_check(const cllm::TensorInfo& t, size_t tensor_index) {
  constexpr size_t kAll = 256, kSample = 64;
  std::vector<size_t> idx;
  if (t.size <= kAll) {
    for (size_t i = 0; i < t.size; ++i) idx.push_back(i);
  } else {
    for (size_t k = 0; idx.size() < kSample; ++k) {
      const size_t i = size_t(cllm::hash_words(0x5eedULL, tensor_index, k) % t.size);
      if (std::find(idx.begin(), idx.end(), i) == idx.end()) idx.push_back(i);
    }
  }
  return idx;
}

}  // namespace

TEST_CASE("finite differences match the analytic gradient of every tensor", "[gradcheck]") {
  const ModelConfig cfg = tiny_config();
  const ParamLayout layout(cfg);
  auto params = noisy_params(layout, 7);
  const auto tokens = random_tokens(kBatch, kContext, cfg.vocab, 11);
  Model<double> model(cfg, kBatch, kContext);

  AlignedVector<double> grad(layout.total());
  const double loss = model.forward_backward(params.data(), tokens.data(), kBatch, grad.data());
  REQUIRE(std::isfinite(loss));
  REQUIRE(loss > 0);

  // Central differences with h = 1e-5 are accurate to about 1e-10..3e-9 in absolute terms
  // (truncation ~h^2, rounding ~eps * loss / h), so the relative error is taken against
  // max(1e-3, |num| + |ana|): entries with a tiny or exactly zero gradient (the key bias: softmax
  // ignores a constant added to a query's scores) must then agree to 1e-9 absolute.
  const double h = 1e-5;
  const double tol = 1e-6, floor = 1e-3;
  for (size_t ti = 0; ti < layout.tensors().size(); ++ti) {
    const auto& t = layout.tensors()[ti];
    size_t checked = 0, bad = 0, worst = 0;
    double worst_err = 0, worst_num = 0, worst_ana = 0, grad_norm = 0;
    for (size_t i : entries_to_check(t, ti)) {
      double& p = params[t.offset + i];
      const double saved = p;
      p = saved + h;
      const double lp = model.forward(params.data(), tokens.data(), kBatch);
      p = saved - h;
      const double lm = model.forward(params.data(), tokens.data(), kBatch);
      p = saved;
      const double num = (lp - lm) / (2 * h);
      const double ana = grad[t.offset + i];
      const double err = std::abs(num - ana) / std::max(floor, std::abs(num) + std::abs(ana));
      ++checked;
      grad_norm += ana * ana;
      if (!(err <= tol)) ++bad;
      if (!(err <= worst_err)) worst_err = err, worst = i, worst_num = num, worst_ana = ana;
    }
    INFO("tensor " << t.name << ": " << bad << " of " << checked
                   << " checked entries out of tolerance; worst entry " << worst << ": numeric "
                   << worst_num << ", analytic " << worst_ana << ", relative error " << worst_err);
    CHECK(checked >= std::min<size_t>(t.size, 20));
    CHECK(grad_norm > 0);
    CHECK(bad == 0);
  }

  // The key part of each c_attn.bias has zero gradient (up to rounding), the query and value
  // parts do not.
  for (int l = 0; l < cfg.layers; ++l) {
    const double* gb = grad.data() + layout.blocks[l].qkv_b;
    double q = 0, k = 0, v = 0;
    for (int j = 0; j < cfg.d_model; ++j)
      q += std::abs(gb[j]), k += std::abs(gb[cfg.d_model + j]),
          v += std::abs(gb[2 * cfg.d_model + j]);
    INFO("layer " << l << " c_attn.bias gradient, sum of |.| over q, k, v: " << q << ", " << k
                  << ", " << v);
    CHECK(k <= 1e-12 * (q + v));
    CHECK(q > 0);
    CHECK(v > 0);
  }

  // Sequences of 5 tokens never reach position 5: that wpe row has exactly zero gradient.
  const double* wpe_grad = grad.data() + layout.wpe;
  const int d = cfg.d_model;
  for (int pos = kContext; pos < cfg.context; ++pos)
    for (int j = 0; j < d; ++j) {
      INFO("wpe gradient at unused position " << pos << ", component " << j);
      CHECK(wpe_grad[size_t(pos) * d + j] == 0.0);
    }
  for (int pos = 0; pos < kContext; ++pos) {
    double s = 0;
    for (int j = 0; j < d; ++j) s += std::abs(wpe_grad[size_t(pos) * d + j]);
    INFO("wpe gradient at used position " << pos);
    CHECK(s > 0);
  }
}

TEST_CASE("Model<float> agrees with Model<double>", "[gradcheck]") {
  const ModelConfig cfg = tiny_config();
  const ParamLayout layout(cfg);
  // Round the parameters to float first, so both models see exactly the same values.
  const auto pf = convert<float>(noisy_params(layout, 21));
  const auto pd = convert<double>(pf);
  const auto tokens = random_tokens(kBatch, kContext, cfg.vocab, 22);

  Model<float> mf(cfg, kBatch, kContext);
  Model<double> md(cfg, kBatch, kContext);
  AlignedVector<float> gf(layout.total());
  AlignedVector<double> gd(layout.total());
  const double lf = mf.forward_backward(pf.data(), tokens.data(), kBatch, gf.data());
  const double ld = md.forward_backward(pd.data(), tokens.data(), kBatch, gd.data());
  INFO("float loss " << lf << ", double loss " << ld);
  CHECK(std::abs(lf - ld) <= 1e-5 * std::abs(ld));

  const auto gf_d = convert<double>(gf);
  for (const auto& t : layout.tensors()) {
    const double rel = rel_norm_diff(gf_d.data() + t.offset, gd.data() + t.offset, t.size);
    INFO("tensor " << t.name << ": float vs double relative gradient difference " << rel);
    CHECK(rel <= 1e-4);
  }

  // The logits agree too (after forward(): forward_backward leaves dLoss/dlogits there).
  mf.forward(pf.data(), tokens.data(), kBatch);
  md.forward(pd.data(), tokens.data(), kBatch);
  const size_t n = size_t(cfg.vocab) * kBatch * kContext;
  double max_err = 0, max_ref = 0;
  for (size_t i = 0; i < n; ++i) {
    max_err = std::max(max_err, std::abs(double(mf.logits()[i]) - md.logits()[i]));
    max_ref = std::max(max_ref, std::abs(md.logits()[i]));
  }
  INFO("logits: max abs difference " << max_err << ", max |logit| " << max_ref);
  CHECK(max_err <= 1e-5 * std::max(1.0, max_ref));
}

TEMPLATE_TEST_CASE("forward() gives the loss of forward_backward() and of its logits",
                   "[gradcheck]", float, double) {
  const ModelConfig cfg = tiny_config();
  const ParamLayout layout(cfg);
  const auto params = convert<TestType>(noisy_params(layout, 31));
  const auto tokens = random_tokens(kBatch, kContext, cfg.vocab, 32);
  Model<TestType> model(cfg, kBatch, kContext);
  AlignedVector<TestType> grad(layout.total());

  const double l_fb = model.forward_backward(params.data(), tokens.data(), kBatch, grad.data());
  const double l_f = model.forward(params.data(), tokens.data(), kBatch);
  const double tol = std::is_same<TestType, float>::value ? 1e-6 : 1e-13;
  INFO("forward_backward " << l_fb << ", forward " << l_f);
  CHECK(std::abs(l_fb - l_f) <= tol * std::abs(l_fb));

  // The summed cross-entropy recomputed in double from logits() (column n = token n).
  const TestType* logits = model.logits();
  double ce = 0;
  for (int r = 0; r < kBatch; ++r)
    for (int s = 0; s < kContext; ++s) {
      const TestType* col = logits + size_t(r * kContext + s) * cfg.vocab;
      double mx = -1e300;
      for (int v = 0; v < cfg.vocab; ++v) mx = std::max(mx, double(col[v]));
      double z = 0;
      for (int v = 0; v < cfg.vocab; ++v) z += std::exp(double(col[v]) - mx);
      const int target = tokens[size_t(r) * (kContext + 1) + s + 1];
      ce += mx + std::log(z) - double(col[target]);
    }
  INFO("cross-entropy from logits " << ce);
  CHECK(std::abs(ce - l_f) <= 10 * tol * std::abs(l_f));
}

TEMPLATE_TEST_CASE("forward_backward is repeatable: the workspace keeps no state", "[gradcheck]",
                   float, double) {
  const ModelConfig cfg = tiny_config();
  const ParamLayout layout(cfg);
  const auto params = convert<TestType>(noisy_params(layout, 41));
  const auto tokens = random_tokens(kBatch, kContext, cfg.vocab, 42);
  const auto other = random_tokens(kBatch, kContext, cfg.vocab, 43);
  const auto other_params = convert<TestType>(noisy_params(layout, 44));
  Model<TestType> model(cfg, kBatch, kContext);

  AlignedVector<TestType> g1(layout.total()), g2(layout.total(), TestType(-7)),
      scratch(layout.total());
  const double l1 = model.forward_backward(params.data(), tokens.data(), kBatch, g1.data());
  const double l2 = model.forward_backward(params.data(), tokens.data(), kBatch, g2.data());
  CHECK(l1 == l2);
  CHECK(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(TestType)) == 0);

  // Other work in between (other tokens, other parameters, a smaller batch, a forward only)
  // leaves no trace either.
  model.forward_backward(other_params.data(), other.data(), kBatch, scratch.data());
  model.forward_backward(params.data(), other.data(), 1, scratch.data());
  model.forward(other_params.data(), tokens.data(), kBatch);
  std::fill(g2.begin(), g2.end(), TestType(3));
  const double l3 = model.forward_backward(params.data(), tokens.data(), kBatch, g2.data());
  CHECK(l1 == l3);
  CHECK(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(TestType)) == 0);

  // A second Model instance gives the same bits.
  Model<TestType> fresh(cfg, kBatch, kContext);
  std::fill(g2.begin(), g2.end(), TestType(0));
  const double l4 = fresh.forward_backward(params.data(), tokens.data(), kBatch, g2.data());
  CHECK(l1 == l4);
  CHECK(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(TestType)) == 0);
}

TEST_CASE("a batch smaller than max_batch works and losses add up over rows", "[gradcheck]") {
  const ModelConfig cfg = tiny_config();
  const ParamLayout layout(cfg);
  const auto params = noisy_params(layout, 51);
  const int rows = 3;
  const auto tokens = random_tokens(rows, kContext, cfg.vocab, 52);
  const size_t row_len = kContext + 1;

  // Reference: each row alone, in a model sized for exactly one row.
  Model<double> one(cfg, 1, kContext);
  AlignedVector<double> g_row(layout.total());
  std::vector<double> row_loss(rows);
  std::vector<AlignedVector<double>> row_grad;
  for (int r = 0; r < rows; ++r) {
    row_loss[r] = one.forward_backward(params.data(), tokens.data() + r * row_len, 1, g_row.data());
    row_grad.push_back(g_row);
  }

  Model<double> big(cfg, 5, kContext);
  REQUIRE(big.max_batch() == 5);
  REQUIRE(big.context() == kContext);
  for (int batch = 1; batch <= rows; ++batch) {
    AlignedVector<double> g(layout.total(), 99.0);
    const double loss = big.forward_backward(params.data(), tokens.data(), batch, g.data());
    double expect = 0;
    AlignedVector<double> g_expect(layout.total(), 0.0);
    for (int r = 0; r < batch; ++r) {
      expect += row_loss[r];
      for (size_t i = 0; i < g.size(); ++i) g_expect[i] += row_grad[r][i];
    }
    INFO("batch " << batch << " of max 5: loss " << loss << ", sum of row losses " << expect);
    CHECK(std::abs(loss - expect) <= 1e-12 * std::abs(expect));
    CHECK(rel_norm_diff(g.data(), g_expect.data(), g.size()) <= 1e-12);
    CHECK(std::abs(big.forward(params.data(), tokens.data(), batch) - loss) <=
          1e-12 * std::abs(loss));
  }
}

TEMPLATE_TEST_CASE("out-of-range token ids throw std::invalid_argument", "[gradcheck]", float,
                   double) {
  const ModelConfig cfg = tiny_config();
  const ParamLayout layout(cfg);
  const auto params = convert<TestType>(noisy_params(layout, 61));
  Model<TestType> model(cfg, kBatch, kContext);
  AlignedVector<TestType> grad(layout.total());
  const size_t n = size_t(kBatch) * (kContext + 1);

  for (int32_t badid : {-1, cfg.vocab, cfg.vocab + 1000, int32_t(-2147483647 - 1)}) {
    // In an input position, and in the last (target-only) position of the last row.
    for (size_t where : {size_t(0), size_t(3), n - 1}) {
      auto tokens = random_tokens(kBatch, kContext, cfg.vocab, 62);
      tokens[where] = badid;
      INFO("id " << badid << " at flat position " << where);
      CHECK_THROWS_AS(model.forward_backward(params.data(), tokens.data(), kBatch, grad.data()),
                      std::invalid_argument);
      CHECK_THROWS_AS(model.forward(params.data(), tokens.data(), kBatch), std::invalid_argument);
    }
  }
  // The model still works afterwards, and ids at the edges of the range are fine.
  auto tokens = random_tokens(kBatch, kContext, cfg.vocab, 62);
  tokens[0] = 0;
  tokens[n - 1] = cfg.vocab - 1;
  const double loss = model.forward_backward(params.data(), tokens.data(), kBatch, grad.data());
  CHECK(std::isfinite(loss));
}

TEMPLATE_TEST_CASE("recompute (activation checkpointing) gives the same loss and gradient bits",
                   "[gradcheck][recompute]", float, double) {
  ModelConfig cfg = tiny_config();
  cfg.layers = 3;  // the top block keeps its activations; the two below are run again
  const ParamLayout layout(cfg);
  const auto params = convert<TestType>(noisy_params(layout, 51));
  const auto tokens = random_tokens(kBatch, kContext, cfg.vocab, 52);
  Model<TestType> kept(cfg, kBatch, kContext);
  Model<TestType> again(cfg, kBatch, kContext, false, true);
  AlignedVector<TestType> g1(layout.total()), g2(layout.total(), TestType(5));
  for (int batch : {kBatch, 1}) {
    const double l1 = kept.forward_backward(params.data(), tokens.data(), batch, g1.data());
    const double l2 = again.forward_backward(params.data(), tokens.data(), batch, g2.data());
    CHECK(l1 == l2);
    CHECK(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(TestType)) == 0);
  }
  // The forward pass alone is the same too.
  CHECK(kept.forward(params.data(), tokens.data(), kBatch) ==
        again.forward(params.data(), tokens.data(), kBatch));
}

TEST_CASE("recompute gives the same bits with bf16 products", "[gradcheck][recompute][bf16]") {
  ModelConfig cfg = tiny_config();
  cfg.layers = 3;
  if (!cllm::gemm::has_bf16()) {  // without the instructions the model refuses bf16
    CHECK_THROWS_AS(Model<float>(cfg, kBatch, kContext, true, true), std::invalid_argument);
    return;
  }
  const ParamLayout layout(cfg);
  const auto params = convert<float>(noisy_params(layout, 61));
  const auto tokens = random_tokens(kBatch, kContext, cfg.vocab, 62);
  Model<float> kept(cfg, kBatch, kContext, true, false), again(cfg, kBatch, kContext, true, true);
  AlignedVector<float> g1(layout.total()), g2(layout.total());
  CHECK(kept.forward_backward(params.data(), tokens.data(), kBatch, g1.data()) ==
        again.forward_backward(params.data(), tokens.data(), kBatch, g2.data()));
  CHECK(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(float)) == 0);
}
