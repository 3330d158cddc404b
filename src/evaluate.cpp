#include "src/evaluate.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "src/corpus.hpp"
#include "src/sampler.hpp"

namespace cllm {

namespace {

// Runs every check before any member is built, and returns the model's batch size.
int checked_batch(const ModelConfig& cfg, TokenView val, int context, int max_windows, int batch,
                  double bytes_per_token, int* count) {
  cfg.validate();
  if (context < 1 || context > cfg.context)
    throw ConfigError(fmt::format("evaluation context {} must be in [1, {}] (the model's context)",
                                  context, cfg.context));
  if (batch < 1) throw ConfigError(fmt::format("evaluation batch must be >= 1 (got {})", batch));
  if (!(bytes_per_token > 0) || !std::isfinite(bytes_per_token))
    throw ConfigError(fmt::format("bytes per token must be positive (got {})", bytes_per_token));
  // Same count as validation_windows(), without building them twice.
  const size_t width = size_t(context) + 1;
  size_t n = val.size() >= width ? (val.size() - 1) / size_t(context) : 0;
  if (max_windows > 0) n = std::min(n, size_t(max_windows));
  if (n == 0)
    throw CorpusError(
        fmt::format("{} validation tokens are too few: one window needs {} (context {} + 1)",
                    val.size(), width, context));
  for (size_t i = 0; i < std::min(val.size(), n * size_t(context) + 1); ++i)
    if (val[i] < 0 || val[i] >= cfg.vocab)
      throw std::invalid_argument(fmt::format(
          "validation token {} (id {}) is outside the vocabulary [0, {})", i, val[i], cfg.vocab));
  *count = int(std::min<size_t>(n, size_t(1) << 30));
  return std::min(batch, *count);
}

}  // namespace

Evaluator::Evaluator(const ModelConfig& cfg, TokenView val, int context, int max_windows, int batch,
                     double bytes_per_token)
    : context_(context),
      batch_(checked_batch(cfg, val, context, max_windows, batch, bytes_per_token, &count_)),
      model_(cfg, batch_, context) {
  int count = 0;
  windows_ = validation_windows(val, context, count_, &count);
  if (count != count_) throw std::logic_error("validation window count mismatch");
  bytes_ = double(int64_t(count_) * context_) * bytes_per_token;
}

Evaluator::Evaluator(const ModelConfig& cfg, TokenView val, int context, int max_windows, int batch,
                     const Tokenizer& tok)
    : Evaluator(cfg, val, context, max_windows, batch, 1.0) {
  // The targets of window k are its ids 1..context.
  const size_t width = size_t(context_) + 1;
  int64_t bytes = 0;
  for (int k = 0; k < count_; ++k)
    for (size_t i = 1; i < width; ++i) bytes += int64_t(tok.token_length(windows_[k * width + i]));
  if (bytes <= 0) throw ConfigError("the validation windows hold no text");
  bytes_ = double(bytes);
}

EvalResult Evaluator::run(const float* weights) {
  if (weights == nullptr) throw std::invalid_argument("Evaluator::run() needs weights");
  const size_t width = size_t(context_) + 1;
  double sum = 0;
  for (int first = 0; first < count_; first += batch_) {
    const int rows = std::min(batch_, count_ - first);
    sum += model_.forward(weights, windows_.data() + size_t(first) * width, rows);
  }
  EvalResult r;
  r.windows = count_;
  r.tokens = int64_t(count_) * context_;
  r.loss = sum / double(r.tokens);
  r.bytes = bytes_;
  r.bits_per_byte = sum / std::log(2.0) / bytes_;
  return r;
}

}  // namespace cllm
