#include "src/generate.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "src/model.hpp"
#include "src/rng.hpp"

namespace cllm {

void validate(const SamplingOptions& o) {
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature))
    throw ConfigError(
        fmt::format("temperature must be a finite number >= 0 (got {})", o.temperature));
  if (!(o.top_p > 0 && o.top_p <= 1))
    throw ConfigError(fmt::format("top-p must be in (0, 1] (got {})", o.top_p));
}

int32_t sample_token(const float* logits, int vocab, const SamplingOptions& o, uint64_t index,
                     std::vector<std::pair<float, int32_t>>& scratch) {
  validate(o);
  if (vocab < 1) throw std::invalid_argument(fmt::format("vocab must be >= 1 (got {})", vocab));
  // Argmax (first maximum wins) and a finiteness check in one pass.
  int32_t best = 0;
  float mx = logits[0];
  for (int i = 0; i < vocab; ++i) {
    if (!std::isfinite(logits[i]))
      throw std::invalid_argument(fmt::format("logit {} of token {} is not finite", logits[i], i));
    if (logits[i] > mx) mx = logits[i], best = int32_t(i);
  }
  if (o.temperature == 0 || o.top_k == 1 || vocab == 1) return best;

  // Most likely first; equal logits by lower id, so the order is fully determined.
  auto before = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  const bool use_p = o.top_p < 1.0;
  size_t m = size_t(vocab);
  if (o.top_k > 0 && o.top_k < vocab) {
    m = size_t(o.top_k);
    // The k most likely in that order: the k-th largest logit `cut` by selection over the bare
    // values, then every logit above it and the lowest ids among those equal to it, sorted.
    thread_local std::vector<float> vals;
    vals.assign(logits, logits + vocab);
    std::nth_element(vals.begin(), vals.begin() + std::ptrdiff_t(m - 1), vals.end(),
                     std::greater<float>());
    const float cut = vals[m - 1];
    scratch.clear();
    for (int i = 0; i < vocab; ++i)
      if (logits[i] > cut) scratch.emplace_back(logits[i], int32_t(i));
    for (int i = 0; i < vocab && scratch.size() < m; ++i)
      if (logits[i] == cut) scratch.emplace_back(logits[i], int32_t(i));
    std::sort(scratch.begin(), scratch.end(), before);
  } else {
    scratch.resize(size_t(vocab));
    for (int i = 0; i < vocab; ++i) scratch[size_t(i)] = {logits[i], int32_t(i)};
    if (use_p) std::sort(scratch.begin(), scratch.end(), before);
  }  // else: no truncation, the draw walks the ids in order.

  // Unnormalised probabilities exp((l - max) / T) in double: the largest is exactly 1, so the
  // mass is >= 1 and nothing overflows. Division (not a multiplication by 1/T) keeps a tiny
  // temperature from producing 0 * inf.
  const double t = o.temperature, top = double(mx);
  thread_local std::vector<double> weights;  // computed once per draw
  weights.resize(m);
  for (size_t j = 0; j < m; ++j) weights[j] = std::exp((double(scratch[j].first) - top) / t);
  auto weight = [&](size_t j) { return weights[j]; };
  double mass = 0;
  for (size_t j = 0; j < m; ++j) mass += weight(j);
  if (use_p) {
    // Smallest prefix (most likely first) whose mass reaches top_p of the total.
    const double goal = o.top_p * mass;
    double cum = 0;
    size_t keep = 0;
    while (keep < m) {
      cum += weight(keep++);
      if (cum >= goal) break;
    }
    m = keep;
    mass = cum;
  }
  if (m == 1) return scratch[0].second;
  const double target = uniform01(hash_words(o.seed, index)) * mass;
  double cum = 0;
  for (size_t j = 0; j < m; ++j) {
    cum += weight(j);
    if (cum > target) return scratch[j].second;
  }
  return scratch[m - 1].second;  // rounding: target landed on the very end of the mass
}

std::vector<int32_t> generate(const ModelConfig& cfg, const float* weights,
                              const std::vector<int32_t>& prompt, int n, const SamplingOptions& o,
                              const std::function<void(int32_t)>& on_token) {
  cfg.validate();
  validate(o);
  if (n < 0)
    throw ConfigError(fmt::format("number of tokens to generate must be >= 0 (got {})", n));
  if (weights == nullptr) throw std::invalid_argument("generate() needs weights");
  for (size_t i = 0; i < prompt.size(); ++i)
    if (prompt[i] < 0 || prompt[i] >= cfg.vocab)
      throw std::invalid_argument(fmt::format(
          "prompt token {} (id {}) is outside the vocabulary [0, {})", i, prompt[i], cfg.vocab));
  std::vector<int32_t> out;
  if (n == 0) return out;
  out.reserve(size_t(n));

  const int C = cfg.context;
  // `window` mirrors exactly the tokens held in the decoder's cache, in position order.
  std::vector<int32_t> window;
  window.reserve(size_t(C) + 1);
  if (prompt.empty()) {
    window.push_back(cfg.vocab > 10 ? 10 : 0);
  } else {
    const size_t keep = std::min(prompt.size(), size_t(std::max(1, C - 1)));
    window.assign(prompt.end() - std::ptrdiff_t(keep), prompt.end());
  }
  Decoder<float> dec(cfg);
  // bf16: the weight matrices rounded once, then streamed from L2 on every token. Float decodes
  // from the parameters as stored (a packed float copy measured no faster: it still streams
  // from L3), so the float text is that of earlier builds.
  std::optional<DecodeWeights> packed;
  if (o.bf16_weights) packed.emplace(cfg, weights, true);
  const float* logits = dec.prefill(weights, window.data(), int(window.size()));

  std::vector<std::pair<float, int32_t>> scratch;
  scratch.reserve(size_t(cfg.vocab));
  const size_t slide = size_t(std::max(1, C / 2));
  for (int i = 0; i < n; ++i) {
    const int32_t tok =
        sample_token(logits, cfg.vocab, o, uint64_t(prompt.size()) + uint64_t(i), scratch);
    out.push_back(tok);
    if (on_token) on_token(tok);
    if (i + 1 == n) break;
    window.push_back(tok);
    if (dec.position() < C) {
      logits = packed ? dec.step(weights, *packed, tok) : dec.step(weights, tok);
    } else {
      // Cache full: keep the last context/2 tokens (ending with `tok`) and re-encode them from
      // position 0.
      window.erase(window.begin(), window.end() - std::ptrdiff_t(slide));
      dec.reset();
      logits = dec.prefill(weights, window.data(), int(window.size()));
    }
  }
  return out;
}

}  // namespace cllm
