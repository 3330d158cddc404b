#pragma once
// Stateless training-window sampling and deterministic validation windows.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "src/tokenizer.hpp"

namespace cllm {

// The window for (seed, step, row) is a pure function of those numbers: resuming, restarting a
// sphere or changing the number of spheres never changes which tokens a step trains on. `row` is
// the GLOBAL row index within the step's batch (shard s with micro_batch m owns rows
// [s*m, (s+1)*m)), so changing the micro-batch does not change the data either.
class WindowSampler {
 public:
  // `tokens` (ids stored in 2 or 4 bytes, see TokenView) must outlive the sampler. Throws
  // CorpusError when tokens.size() < context + 1 and std::invalid_argument when context < 1.
  WindowSampler(TokenView tokens, int context, uint64_t seed);

  // Uniform in [0, num_windows()), from hash_words(seed, step, row).
  size_t window_start(uint64_t step, uint64_t row) const;
  // Writes rows [first_row, first_row + rows) of step `step`, each context + 1 ids (inputs plus
  // the shifted targets), row-major, into out (rows * (context + 1) ids, widened to int32).
  void fill(uint64_t step, uint64_t first_row, int rows, int32_t* out) const;

  int context() const { return context_; }
  size_t num_windows() const { return num_windows_; }  // number of valid starts
  uint64_t seed() const { return seed_; }

 private:
  TokenView tokens_;
  int context_;
  uint64_t seed_;
  size_t num_windows_;
};

// Deterministic validation windows: non-overlapping windows of context + 1 tokens taken in order
// from the start of `val` (stride = context, so targets never repeat), at most max_windows of
// them (max_windows <= 0 = all). Returns count * (context + 1) ids; *count (if not null) = count.
std::vector<int32_t> validation_windows(TokenView val, int context, int max_windows, int* count);

}  // namespace cllm
