#pragma once
// Text generation: sampling the next token from logits (temperature, top-k, top-p) and
// autoregressive decoding with the KV-cache Decoder.
//
// Everything is deterministic: the random draw for a token is a pure function of (seed, index),
// so the same weights, prompt and options always give the same text, on any machine that runs the
// same binary.
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "src/config.hpp"

namespace cllm {

struct SamplingOptions {
  double temperature = 0.8;  // 0 = greedy (argmax); must be >= 0
  int top_k = 40;            // keep the k most likely tokens; <= 0 = off
  double top_p = 0.95;  // keep the smallest set of most likely tokens with mass >= p; >= 1 = off
  uint64_t seed = 1;
  // Decode with bfloat16 copies of the weight matrices (DecodeWeights): half the bytes per token,
  // about twice as fast where float weights exceed the L2 cache; logits within bf16 rounding of
  // float ones, so the text may differ from the float text. Still deterministic. Off by default.
  bool bf16_weights = false;
};

// Throws ConfigError with a one-line message naming the bad option (temperature < 0 or not
// finite, top_p <= 0 or > 1 or not a number).
void validate(const SamplingOptions& o);

// Picks the next token from `vocab` logits.
//  - temperature 0, top_k 1 or a top_p so small that only the most likely token is kept: the
//    argmax (ties go to the lowest id), without any random draw;
//  - otherwise probabilities softmax(logits / temperature) are computed in double (max
//    subtracted first), truncated to the top_k most likely tokens, then to the smallest prefix of
//    the remaining tokens (most likely first, ties by lower id) whose mass reaches top_p of what
//    is left, and one token is drawn with u = uniform01(hash_words(seed, index)) (src/rng.hpp).
// `index` is the position of the generated token in its sequence (generate() passes it), so
// every draw is a pure function of (seed, index). `scratch` is reused between calls (no
// allocation once it has held `vocab` entries). Throws std::invalid_argument for vocab < 1 or
// a NaN / infinite logit, and ConfigError for invalid options.
int32_t sample_token(const float* logits, int vocab, const SamplingOptions& o, uint64_t index,
                     std::vector<std::pair<float, int32_t>>& scratch);

// Generates `n` (>= 0) tokens after `prompt` with Decoder<float> and `weights` (layout of
// ParamLayout(cfg)). Returns only the new tokens.
//  - An empty prompt starts from token '\n' (10) when vocab > 10, else from token 0; that start
//    token is not part of the result.
//  - A prompt longer than the context keeps only its last (context - 1) tokens (at least 1), so
//    there is room in the cache for the first generated token.
//  - Sliding window: when the cache is full (context tokens) and another token must be fed, the
//    cache is rebuilt from scratch from the last max(1, context / 2) tokens of the text (ending
//    with the token being fed), which then take positions 0, 1, ... again. Generation therefore
//    never stops at the context length; it costs one re-encode of context/2 tokens every
//    context/2 generated tokens, and the model sees at most `context` tokens of history.
//  - Token i of the result (0-based) is drawn with index = prompt.size() + i, its position in
//    the full text (prompt followed by the result).
// Throws ConfigError for an invalid model configuration, options or n < 0, and
// std::invalid_argument for a prompt id outside [0, vocab).
// `on_token`, when given, is called with each token as soon as it is drawn (to stream the text).
std::vector<int32_t> generate(const ModelConfig& cfg, const float* weights,
                              const std::vector<int32_t>& prompt, int n, const SamplingOptions& o,
                              const std::function<void(int32_t)>& on_token = {});

}  // namespace cllm
