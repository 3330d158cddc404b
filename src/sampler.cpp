#include "src/sampler.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>

#include "src/corpus.hpp"
#include "src/rng.hpp"

namespace cllm {

WindowSampler::WindowSampler(TokenView tokens, int context, uint64_t seed)
    : tokens_(tokens), context_(context), seed_(seed), num_windows_(0) {
  if (context < 1) {
    throw std::invalid_argument(fmt::format("window context must be >= 1, got {}", context));
  }
  if (tokens.size() < static_cast<size_t>(context) + 1) {
    throw CorpusError(
        fmt::format("{} training tokens are too few: one window needs {} (context {} + 1)",
                    tokens.size(), context + 1, context));
  }
  num_windows_ = tokens.size() - static_cast<size_t>(context);
}

size_t WindowSampler::window_start(uint64_t step, uint64_t row) const {
  uint64_t h = hash_words(seed_, step, row);
  // Multiply-shift maps 64 random bits onto [0, n) with bias below n / 2^64: no rejection loop,
  // so each draw costs exactly one hash.
  return static_cast<size_t>((static_cast<unsigned __int128>(h) * num_windows_) >> 64);
}

void WindowSampler::fill(uint64_t step, uint64_t first_row, int rows, int32_t* out) const {
  const size_t width = static_cast<size_t>(context_) + 1;
  for (int r = 0; r < rows; ++r) {
    size_t start = window_start(step, first_row + static_cast<uint64_t>(r));
    tokens_.copy_to(start, width, out + static_cast<size_t>(r) * width);
  }
}

std::vector<int32_t> validation_windows(TokenView val, int context, int max_windows, int* count) {
  if (context < 1) {
    throw std::invalid_argument(fmt::format("window context must be >= 1, got {}", context));
  }
  const size_t width = static_cast<size_t>(context) + 1;
  // Window k starts at k * context and needs k * context + context + 1 <= size.
  size_t n = val.size() >= width ? (val.size() - 1) / static_cast<size_t>(context) : 0;
  if (max_windows > 0) n = std::min(n, static_cast<size_t>(max_windows));
  n = std::min(n, static_cast<size_t>(std::numeric_limits<int>::max()));  // *count is an int
  std::vector<int32_t> out(n * width);
  for (size_t k = 0; k < n; ++k)
    val.copy_to(k * static_cast<size_t>(context), width, out.data() + k * width);
  if (count != nullptr) *count = static_cast<int>(n);
  return out;
}

}  // namespace cllm
