// Generation and evaluation: KV-cache decoding against the full forward pass, the sampler's
// truncation rules and statistics, generate()'s prompt handling and sliding window, and the
// validation-loss evaluator.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "src/aligned.hpp"
#include "src/config.hpp"
#include "src/corpus.hpp"
#include "src/evaluate.hpp"
#include "src/generate.hpp"
#include "src/model.hpp"
#include "src/params.hpp"
#include "src/rng.hpp"
#include "src/sampler.hpp"

using namespace cllm;

namespace {

// vocab 13 (> 10, so an empty prompt starts from '\n'), d 16, 2 layers, 2 heads, context 12.
ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab = 13;
  c.d_model = 16;
  c.layers = 2;
  c.n_heads = 2;
  c.context = 12;
  return c;
}

// GPT-2 initialisation plus N(0, 0.2^2) noise on every real entry, so logits are far from flat.
template <class Scalar>
AlignedVector<Scalar> noisy_params(const ParamLayout& layout, uint64_t seed) {
  AlignedVector<Scalar> p(layout.total());
  init_parameters<Scalar>(layout, seed, p.data());
  const uint64_t key = hash_words(seed, 0x9e7eULL);
  for (const auto& t : layout.tensors())
    for (size_t i = 0; i < t.size; ++i)
      p[t.offset + i] += Scalar(0.2 * normal_at(key, t.offset + i));
  return p;
}

std::vector<int32_t> random_tokens(size_t n, int vocab, uint64_t seed) {
  std::vector<int32_t> tok(n);
  for (size_t i = 0; i < n; ++i) tok[i] = int32_t(hash_words(seed, 0x70cULL, i) % uint64_t(vocab));
  return tok;
}

template <class Scalar>
void check_decoder_matches_forward(double tol) {
  const ModelConfig cfg = tiny_config();
  const ParamLayout layout(cfg);
  const auto params = noisy_params<Scalar>(layout, 42);
  const int N = cfg.context;
  const auto tokens = random_tokens(size_t(N) + 1, cfg.vocab, 5);

  Model<Scalar> model(cfg, 1, N);
  model.forward(params.data(), tokens.data(), 1);
  const Scalar* full = model.logits();  // vocab x N, column n = token n

  Decoder<Scalar> dec(cfg);
  for (int pass = 0; pass < 2; ++pass) {  // the second pass checks reset()
    dec.reset();
    double worst = 0, spread = 0;
    for (int n = 0; n < N; ++n) {
      REQUIRE(dec.position() == n);
      const Scalar* inc = dec.step(params.data(), tokens[size_t(n)]);
      Scalar lo = inc[0], hi = inc[0];
      for (int v = 0; v < cfg.vocab; ++v) {
        const double a = double(inc[v]), b = double(full[size_t(n) * cfg.vocab + v]);
        worst = std::max(worst, std::abs(a - b) / std::max(1.0, std::abs(b)));
        lo = std::min(lo, inc[v]), hi = std::max(hi, inc[v]);
      }
      spread = std::max(spread, double(hi - lo));
    }
    REQUIRE(dec.position() == N);
    CHECK(worst <= tol);
    CHECK(spread > 0.5);  // the logits are not flat, so the comparison means something
    CHECK_THROWS_AS(dec.step(params.data(), 0), std::out_of_range);
  }
  // prefill: any prefix at once from an empty cache, then step() on top of it.
  for (int n : {1, 2, N / 2 + 1, N - 1}) {
    dec.reset();
    const Scalar* inc = dec.prefill(params.data(), tokens.data(), n);
    REQUIRE(dec.position() == n);
    double worst = 0;
    for (int v = 0; v < cfg.vocab; ++v) {
      const double a = double(inc[v]), b = double(full[size_t(n - 1) * cfg.vocab + v]);
      worst = std::max(worst, std::abs(a - b) / std::max(1.0, std::abs(b)));
    }
    inc = dec.step(params.data(), tokens[size_t(n)]);
    for (int v = 0; v < cfg.vocab; ++v) {
      const double a = double(inc[v]), b = double(full[size_t(n) * cfg.vocab + v]);
      worst = std::max(worst, std::abs(a - b) / std::max(1.0, std::abs(b)));
    }
    INFO("prefill of " << n << " tokens");
    CHECK(worst <= tol);
  }
  dec.reset();
  CHECK_THROWS_AS(dec.prefill(params.data(), tokens.data(), N + 1), std::out_of_range);
}

SamplingOptions opts(double temperature, int top_k, double top_p, uint64_t seed = 1) {
  SamplingOptions o;
  o.temperature = temperature, o.top_k = top_k, o.top_p = top_p, o.seed = seed;
  return o;
}

std::vector<double> softmax(const std::vector<float>& l, double t) {
  const double mx = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size());
  double s = 0;
  for (size_t i = 0; i < l.size(); ++i) s += p[i] = std::exp((l[i] - mx) / t);
  for (auto& x : p) x /= s;
  return p;
}

// Pearson's chi-square statistic of `draws` draws from the sampler against probabilities p.
double chi_square(const std::vector<float>& logits, const SamplingOptions& o,
                  const std::vector<double>& p, int draws) {
  std::vector<std::pair<float, int32_t>> scratch;
  std::vector<int> count(logits.size(), 0);
  for (int i = 0; i < draws; ++i)
    ++count[size_t(sample_token(logits.data(), int(logits.size()), o, uint64_t(i), scratch))];
  double chi = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) {
      REQUIRE(count[i] == 0);
      continue;
    }
    const double e = p[i] * draws;
    chi += (count[i] - e) * (count[i] - e) / e;
  }
  return chi;
}

// The sliding-window rule of generate(), spelled out with a fresh decoder for every token.
std::vector<int32_t> reference_generate(const ModelConfig& cfg, const float* w,
                                        const std::vector<int32_t>& prompt, int n,
                                        const SamplingOptions& o) {
  const size_t C = size_t(cfg.context);
  std::vector<int32_t> window;
  if (prompt.empty())
    window = {cfg.vocab > 10 ? 10 : 0};
  else
    window.assign(
        prompt.end() - std::ptrdiff_t(std::min(prompt.size(), std::max<size_t>(1, C - 1))),
        prompt.end());
  std::vector<int32_t> out;
  std::vector<std::pair<float, int32_t>> scratch;
  Decoder<float> dec(cfg);
  for (int i = 0; i < n; ++i) {
    dec.reset();
    const float* logits = dec.prefill(w, window.data(), int(window.size()));
    const int32_t tok = sample_token(logits, cfg.vocab, o, prompt.size() + size_t(i), scratch);
    out.push_back(tok);
    window.push_back(tok);
    if (window.size() > C)
      window.erase(window.begin(), window.end() - std::ptrdiff_t(std::max<size_t>(1, C / 2)));
  }
  return out;
}

}  // namespace

TEST_CASE("KV-cache decoding gives the logits of the full forward pass", "[generate]") {
  SECTION("float") {
    check_decoder_matches_forward<float>(1e-4);
  }
  SECTION("double") {
    check_decoder_matches_forward<double>(1e-10);
  }
}

TEST_CASE("sample_token: greedy and truncations that leave only the argmax", "[generate]") {
  std::vector<std::pair<float, int32_t>> scratch;
  for (uint64_t trial = 0; trial < 50; ++trial) {
    std::vector<float> l(37);
    for (size_t i = 0; i < l.size(); ++i) l[i] = float(3 * normal_at(trial, i));
    const int32_t am = int32_t(std::max_element(l.begin(), l.end()) - l.begin());
    const int V = int(l.size());
    for (uint64_t idx = 0; idx < 20; ++idx) {
      CHECK(sample_token(l.data(), V, opts(0, 40, 0.95, trial), idx, scratch) == am);
      CHECK(sample_token(l.data(), V, opts(0, 0, 1, trial), idx, scratch) == am);
      for (double t : {0.1, 1.0, 5.0, 1000.0}) {
        CHECK(sample_token(l.data(), V, opts(t, 1, 1, trial), idx, scratch) == am);
        CHECK(sample_token(l.data(), V, opts(t, 0, 1e-9, trial), idx, scratch) == am);
        CHECK(sample_token(l.data(), V, opts(t, 5, 1e-9, trial), idx, scratch) == am);
      }
    }
  }
  // Ties go to the lowest id, with or without sorting.
  const std::vector<float> tie = {0.f, 2.f, 1.f, 2.f};
  CHECK(sample_token(tie.data(), 4, opts(0, 0, 1), 0, scratch) == 1);
  CHECK(sample_token(tie.data(), 4, opts(1, 1, 1), 0, scratch) == 1);
  CHECK(sample_token(tie.data(), 4, opts(1, 0, 1e-6), 0, scratch) == 1);
  // A single-token vocabulary.
  CHECK(sample_token(tie.data(), 1, opts(1, 0, 1), 3, scratch) == 0);
}

TEST_CASE("sample_token is a pure function of (seed, index)", "[generate]") {
  std::vector<std::pair<float, int32_t>> scratch;
  const std::vector<float> l = {0.1f, 0.f, -0.2f, 0.3f, 0.05f, 0.f, 0.2f, -0.1f};
  int differ = 0, changes = 0;
  int32_t prev = -1;
  for (uint64_t idx = 0; idx < 400; ++idx) {
    const int32_t a = sample_token(l.data(), 8, opts(1, 0, 1, 11), idx, scratch);
    CHECK(sample_token(l.data(), 8, opts(1, 0, 1, 11), idx, scratch) == a);
    const int32_t b = sample_token(l.data(), 8, opts(1, 0, 1, 12), idx, scratch);
    differ += a != b;
    changes += a != prev;
    prev = a;
  }
  // Near-uniform over 8 tokens: two independent streams agree about 1/8 of the time.
  CHECK(differ > 250);
  CHECK(changes > 250);  // and consecutive indices are not correlated
}

TEST_CASE("sample_token draws from softmax(logits / temperature)", "[generate]") {
  const std::vector<float> l = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f};
  const int draws = 20000;
  // Chi-square with 4 degrees of freedom: the 99.9% quantile is 18.5.
  CHECK(chi_square(l, opts(1, 0, 1, 3), softmax(l, 1), draws) < 25);
  CHECK(chi_square(l, opts(2, 0, 1, 4), softmax(l, 2), draws) < 25);
  CHECK(chi_square(l, opts(0.5, -1, 1, 5), softmax(l, 0.5), draws) < 25);
  // top-k 2: tokens 4 and 0, renormalised (1 degree of freedom).
  {
    std::vector<double> p = softmax(l, 1);
    const double s = p[4] + p[0];
    p = {p[0] / s, 0, 0, 0, p[4] / s};
    CHECK(chi_square(l, opts(1, 2, 1, 6), p, draws) < 15);
  }
  // top-p: probabilities are 0.203, 0.123, 0.075, 0.045, 0.553 (most likely: 4, 0, 1, 2, 3);
  // p = 0.7 keeps {4, 0} (0.756 >= 0.7 > 0.553), p = 0.8 keeps {4, 0, 1}.
  {
    const std::vector<double> q = softmax(l, 1);
    REQUIRE(q[4] < 0.7);
    REQUIRE(q[4] + q[0] >= 0.7);
    REQUIRE(q[4] + q[0] < 0.8);
    double s = q[4] + q[0];
    CHECK(chi_square(l, opts(1, 0, 0.7, 7), {q[0] / s, 0, 0, 0, q[4] / s}, draws) < 15);
    s += q[1];
    CHECK(chi_square(l, opts(1, 0, 0.8, 8), {q[0] / s, q[1] / s, 0, 0, q[4] / s}, draws) < 20);
    // top-k and top-p together: top-k 2 first, then p = 0.9 of what is left keeps both.
    s = q[4] + q[0];
    CHECK(chi_square(l, opts(1, 2, 0.9, 9), {q[0] / s, 0, 0, 0, q[4] / s}, draws) < 15);
  }
}

TEST_CASE("sample_token with top-k 2 never leaves the top 2", "[generate]") {
  std::vector<std::pair<float, int32_t>> scratch;
  for (uint64_t trial = 0; trial < 20; ++trial) {
    std::vector<float> l(50);
    for (size_t i = 0; i < l.size(); ++i) l[i] = float(0.3 * normal_at(trial + 100, i));
    std::vector<int32_t> order(l.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    std::set<int32_t> seen;
    for (uint64_t idx = 0; idx < 200; ++idx) {
      const int32_t t = sample_token(l.data(), 50, opts(5, 2, 1, trial), idx, scratch);
      REQUIRE((t == order[0] || t == order[1]));
      seen.insert(t);
    }
    CHECK(seen.size() == 2);
  }
}

TEST_CASE("sampling options are validated", "[generate]") {
  CHECK_NOTHROW(validate(SamplingOptions{}));
  CHECK_NOTHROW(validate(opts(0, 0, 1)));
  CHECK_THROWS_AS(validate(opts(-0.1, 40, 0.9)), ConfigError);
  CHECK_THROWS_AS(validate(opts(std::nan(""), 40, 0.9)), ConfigError);
  CHECK_THROWS_AS(validate(opts(std::numeric_limits<double>::infinity(), 40, 0.9)), ConfigError);
  CHECK_THROWS_AS(validate(opts(1, 40, 0)), ConfigError);
  CHECK_THROWS_AS(validate(opts(1, 40, -1)), ConfigError);
  CHECK_THROWS_AS(validate(opts(1, 40, 1.5)), ConfigError);
  CHECK_THROWS_AS(validate(opts(1, 40, std::nan(""))), ConfigError);
  std::vector<std::pair<float, int32_t>> scratch;
  const std::vector<float> bad = {0.f, std::numeric_limits<float>::quiet_NaN(), 1.f};
  CHECK_THROWS_AS(sample_token(bad.data(), 3, opts(1, 0, 1), 0, scratch), std::invalid_argument);
  CHECK_THROWS_AS(sample_token(bad.data(), 0, opts(1, 0, 1), 0, scratch), std::invalid_argument);
  CHECK_THROWS_AS(sample_token(bad.data(), 1, opts(-1, 0, 1), 0, scratch), ConfigError);
}

TEST_CASE("generate: determinism, prompts and the sliding window", "[generate]") {
  const ModelConfig cfg = tiny_config();
  const ParamLayout layout(cfg);
  const auto w = noisy_params<float>(layout, 9);
  const SamplingOptions o = opts(1.0, 0, 1, 77);
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5};

  SECTION("same seed, same tokens; n tokens in the vocabulary") {
    const auto a = generate(cfg, w.data(), prompt, 8, o);
    REQUIRE(a.size() == 8);
    CHECK(a == generate(cfg, w.data(), prompt, 8, o));
    for (int32_t t : a) CHECK((t >= 0 && t < cfg.vocab));
    CHECK(a == reference_generate(cfg, w.data(), prompt, 8, o));
    // A longer run starts with the same tokens (draws depend on the position only).
    const auto longer = generate(cfg, w.data(), prompt, 20, o);
    CHECK(std::vector<int32_t>(longer.begin(), longer.begin() + 8) == a);
    // Another seed gives another text (over 40 tokens from 13, agreement everywhere is
    // practically impossible).
    CHECK(generate(cfg, w.data(), prompt, 40, opts(1.0, 0, 1, 78)) !=
          generate(cfg, w.data(), prompt, 40, o));
    CHECK(generate(cfg, w.data(), prompt, 0, o).empty());
    // Streaming: the callback sees every token, in order, as it is drawn.
    std::vector<int32_t> streamed;
    const auto b =
        generate(cfg, w.data(), prompt, 20, o, [&](int32_t t) { streamed.push_back(t); });
    CHECK(streamed == b);
    CHECK(b == longer);
  }
  SECTION("empty prompt starts from a newline") {
    const auto a = generate(cfg, w.data(), {}, 10, o);
    REQUIRE(a.size() == 10);
    CHECK(a == reference_generate(cfg, w.data(), {}, 10, o));
    const SamplingOptions greedy = opts(0, 0, 1);
    CHECK(generate(cfg, w.data(), {}, 10, greedy) == generate(cfg, w.data(), {10}, 10, greedy));
    // A vocabulary without '\n' starts from 0.
    ModelConfig small_vocab = cfg;
    small_vocab.vocab = 7;
    const auto w7 = noisy_params<float>(ParamLayout(small_vocab), 3);
    CHECK(generate(small_vocab, w7.data(), {}, 5, greedy) ==
          generate(small_vocab, w7.data(), {0}, 5, greedy));
  }
  SECTION("a prompt longer than the context keeps its last context - 1 tokens") {
    const auto long_prompt = random_tokens(30, cfg.vocab, 8);
    const std::vector<int32_t> tail(long_prompt.end() - (cfg.context - 1), long_prompt.end());
    const SamplingOptions greedy = opts(0, 0, 1);
    CHECK(generate(cfg, w.data(), long_prompt, 6, greedy) ==
          generate(cfg, w.data(), tail, 6, greedy));
    const auto a = generate(cfg, w.data(), long_prompt, 6, o);
    CHECK(a.size() == 6);
    CHECK(a == reference_generate(cfg, w.data(), long_prompt, 6, o));
  }
  SECTION("generation runs past the context length with a sliding window") {
    for (int plen : {0, 1, 5, 11, 12, 40}) {
      const auto p = random_tokens(size_t(plen), cfg.vocab, 100 + plen);
      const int n = 5 * cfg.context + 3;
      const auto a = generate(cfg, w.data(), p, n, o);
      REQUIRE(a.size() == size_t(n));
      CHECK(a == reference_generate(cfg, w.data(), p, n, o));
      CHECK(a == generate(cfg, w.data(), p, n, o));
    }
    // Context 1 and 2: every token is a window of its own / the window slides every token.
    for (int c : {1, 2, 3}) {
      ModelConfig cc = cfg;
      cc.context = c;
      const auto wc = noisy_params<float>(ParamLayout(cc), 4);
      const auto a = generate(cc, wc.data(), prompt, 9, o);
      REQUIRE(a.size() == 9);
      CHECK(a == reference_generate(cc, wc.data(), prompt, 9, o));
    }
  }
  SECTION("bad arguments") {
    CHECK_THROWS_AS(generate(cfg, w.data(), prompt, -1, o), ConfigError);
    CHECK_THROWS_AS(generate(cfg, w.data(), {1, 13}, 3, o), std::invalid_argument);
    CHECK_THROWS_AS(generate(cfg, w.data(), {-1}, 3, o), std::invalid_argument);
    CHECK_THROWS_AS(generate(cfg, w.data(), prompt, 3, opts(1, 0, 2)), ConfigError);
  }
}

TEST_CASE("Evaluator: mean loss over validation windows", "[generate]") {
  const ModelConfig cfg = tiny_config();
  const ParamLayout layout(cfg);
  const auto w = noisy_params<float>(layout, 21);
  const int context = 10;  // shorter than the model's context
  const auto val = random_tokens(size_t(5 * context + 4), cfg.vocab, 22);  // 5 windows

  int count = 0;
  const auto windows = validation_windows(val, context, 0, &count);
  REQUIRE(count == 5);
  Model<float> one(cfg, 1, context);
  double by_hand = 0;
  for (int k = 0; k < count; ++k)
    by_hand += one.forward(w.data(), windows.data() + size_t(k) * (context + 1), 1);
  by_hand /= double(count) * context;

  for (int batch : {1, 2, 5, 64}) {  // batches of 2 leave a partial last batch
    Evaluator ev(cfg, val, context, 0, batch, 1.0);
    REQUIRE(ev.windows() == 5);
    const EvalResult r = ev.run(w.data());
    CHECK(r.windows == 5);
    CHECK(r.tokens == 5 * context);
    CHECK(r.loss == Approx(by_hand).epsilon(1e-6));
    CHECK(r.bits_per_byte == Approx(r.loss / std::log(2.0)).epsilon(1e-12));
    const EvalResult again = ev.run(w.data());
    CHECK(again.loss == r.loss);
    CHECK(again.bits_per_byte == r.bits_per_byte);
  }
  // Fewer windows, and 2 bytes per token.
  {
    Evaluator ev(cfg, val, context, 2, 4, 2.0);
    const EvalResult r = ev.run(w.data());
    CHECK(r.windows == 2);
    CHECK(r.tokens == 2 * context);
    double first_two = 0;
    for (int k = 0; k < 2; ++k)
      first_two += one.forward(w.data(), windows.data() + size_t(k) * (context + 1), 1);
    CHECK(r.loss == Approx(first_two / (2.0 * context)).epsilon(1e-6));
    CHECK(r.bits_per_byte == Approx(r.loss / std::log(2.0) / 2.0).epsilon(1e-12));
  }
  // Bad input.
  CHECK_THROWS_AS(Evaluator(cfg, std::vector<int32_t>(size_t(context), 1), context, 0, 4, 1.0),
                  CorpusError);
  CHECK_THROWS_AS(Evaluator(cfg, val, cfg.context + 1, 0, 4, 1.0), ConfigError);
  CHECK_THROWS_AS(Evaluator(cfg, val, context, 0, 0, 1.0), ConfigError);
  CHECK_THROWS_AS(Evaluator(cfg, val, context, 0, 4, 0.0), ConfigError);
  auto bad = val;
  bad[3] = cfg.vocab;
  CHECK_THROWS_AS(Evaluator(cfg, bad, context, 0, 4, 1.0), std::invalid_argument);
}

TEST_CASE("PackedGemv: y = W x from the packed copy, float and bfloat16", "[generate]") {
  const int64_t G = gemm::gemv_group_rows();
  for (const auto& [M, K] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {5, 3}, {G, 16}, {G + 3, 17}, {3 * G - 1, 128}, {2 * G, 513}}) {
    for (gemm::Op op : {gemm::Op::N, gemm::Op::T}) {
      const int64_t lda = (op == gemm::Op::N ? M : K) + 2;
      std::vector<float> A(size_t(lda * (op == gemm::Op::N ? K : M)));
      std::vector<float> x(static_cast<size_t>(K)), bias(static_cast<size_t>(M));
      for (size_t i = 0; i < A.size(); ++i) A[i] = float(normal_at(11, i));
      for (size_t i = 0; i < x.size(); ++i) x[i] = float(normal_at(12, i));
      for (size_t i = 0; i < bias.size(); ++i) bias[i] = float(normal_at(13, i));
      auto w = [&](int64_t i, int64_t k) {
        return double(op == gemm::Op::N ? A[size_t(k * lda + i)] : A[size_t(i * lda + k)]);
      };
      for (bool bf16 : {false, true}) {
        const gemm::PackedGemv p(op, M, K, A.data(), lda, bf16);
        std::vector<float> y(size_t(M) + 1, 7.0f), y2(size_t(M), 1.5f);
        p.apply(x.data(), bias.data(), y.data(), false);
        p.apply(x.data(), nullptr, y2.data(), true);
        CHECK(y[size_t(M)] == 7.0f);  // nothing written past M rows
        double worst = 0;
        for (int64_t i = 0; i < M; ++i) {
          double ref = 0;  // bf16: the product of the rounded weights
          for (int64_t k = 0; k < K; ++k)
            ref += (bf16 ? double(gemm::round_bf16(float(w(i, k)))) : w(i, k)) * x[size_t(k)];
          worst = std::max(worst, std::abs(y[size_t(i)] - (ref + bias[size_t(i)])));
          worst = std::max(worst, std::abs(y2[size_t(i)] - (ref + 1.5)));
        }
        INFO("M " << M << " K " << K << " bf16 " << bf16);
        CHECK(worst <= 1e-4 * std::sqrt(double(K)));
      }
    }
  }
}

TEST_CASE("decoding through DecodeWeights: float as step(), bf16 within its rounding",
          "[generate]") {
  const ModelConfig cfg = tiny_config();
  const auto params = noisy_params<float>(ParamLayout(cfg), 42);
  const auto tokens = random_tokens(size_t(cfg.context), cfg.vocab, 5);
  const DecodeWeights f32(cfg, params.data(), false), b16(cfg, params.data(), true);
  Decoder<float> ref(cfg), a(cfg), b(cfg);
  double worst_f32 = 0, worst_b16 = 0;
  for (int n = 0; n < cfg.context; ++n) {
    const float* r = ref.step(params.data(), tokens[size_t(n)]);
    const float* x = a.step(params.data(), f32, tokens[size_t(n)]);
    const float* y = b.step(params.data(), b16, tokens[size_t(n)]);
    for (int v = 0; v < cfg.vocab; ++v) {
      worst_f32 = std::max(worst_f32, double(std::abs(x[v] - r[v])));
      worst_b16 = std::max(worst_b16, double(std::abs(y[v] - r[v])));
    }
  }
  CHECK(worst_f32 <= 1e-4);
  CHECK(worst_b16 <= 0.1);  // bfloat16 keeps 8 bits: logits of size ~3 move by ~1e-2
  CHECK(worst_b16 > 0);
  ModelConfig other = cfg;
  other.layers = 1;
  CHECK_THROWS_AS(a.step(params.data(), DecodeWeights(other, params.data(), false), 1),
                  std::invalid_argument);
}

TEST_CASE("generate with bf16 decoding weights is deterministic", "[generate]") {
  const ModelConfig cfg = tiny_config();
  const auto w = noisy_params<float>(ParamLayout(cfg), 9);
  SamplingOptions o = opts(1.0, 0, 1, 77);
  o.bf16_weights = true;
  const auto a = generate(cfg, w.data(), {1, 2, 3}, 3 * cfg.context, o);
  REQUIRE(a.size() == size_t(3 * cfg.context));
  CHECK(a == generate(cfg, w.data(), {1, 2, 3}, 3 * cfg.context, o));
}

TEST_CASE("sample_token top-k with tied logits keeps the lowest ids", "[generate]") {
  std::vector<float> l(50, 0.25f);
  l[7] = 1.0f;
  std::vector<std::pair<float, int32_t>> scratch;
  std::set<int32_t> seen;
  for (uint64_t i = 0; i < 400; ++i)
    seen.insert(sample_token(l.data(), 50, opts(1, 3, 1), i, scratch));
  CHECK(seen == std::set<int32_t>{0, 1, 7});
}
