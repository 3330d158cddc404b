#pragma once
// Validation loss on deterministic held-out windows.
#include <cstdint>
#include <vector>

#include "src/config.hpp"
#include "src/model.hpp"
#include "src/tokenizer.hpp"

namespace cllm {

struct EvalResult {
  double loss = 0;           // mean cross-entropy per token (natural log)
  double bits_per_byte = 0;  // loss / ln(2) * tokens / bytes
  int64_t tokens = 0;        // predicted tokens: windows * context
  double bytes = 0;          // text bytes of the predicted tokens
  int windows = 0;
};

// Mean cross-entropy over the windows validation_windows(val, context, max_windows) (see
// sampler.hpp: non-overlapping, in order from the start of `val`), computed with
// Model<float>::forward in batches of up to `batch` windows. The per-batch loss sums are added in
// a fixed order, so run() is deterministic. Bits per byte divide the summed loss by the bytes
// of text the predicted tokens stand for: counted token by token with `tok` (so runs with
// different tokenizers compare honestly), or tokens * bytes_per_token with the second
// constructor (1 for the byte tokenizer, for which bits_per_byte = loss / ln 2).
//
// The evaluator owns its model workspace and the window buffer: run() allocates nothing.
// Not thread-safe (one per thread).
class Evaluator {
 public:
  // Throws ConfigError for an invalid model, context outside [1, cfg.context], batch < 1 or
  // bytes_per_token <= 0; CorpusError when `val` is too short for one window (context + 1
  // tokens); std::invalid_argument for a token id outside [0, vocab).
  Evaluator(const ModelConfig& cfg, TokenView val, int context, int max_windows, int batch,
            const Tokenizer& tok);
  Evaluator(const ModelConfig& cfg, TokenView val, int context, int max_windows, int batch,
            double bytes_per_token);
  EvalResult run(const float* weights);

  int windows() const { return count_; }
  int context() const { return context_; }

 private:
  std::vector<int32_t> windows_;  // count_ rows of context_ + 1 ids
  int count_ = 0;
  int context_ = 0;
  int batch_ = 0;
  double bytes_ = 0;  // text bytes of all predicted tokens
  Model<float> model_;
};

}  // namespace cllm
