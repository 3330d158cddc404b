#pragma once
// Exact, order-independent summation of shard gradients.
//
// Each shard's float gradient is rounded once onto a per-tensor power-of-two fixed-point grid
// (q = round(g * 2^e)) and summed as 64-bit integers. Integer addition is associative, so the
// total does not depend on tree shape, arrival order, fan-out, backend or restarts.
//
// The exponents e (one per tensor, named grad_scale_exp everywhere: in StepWork, TrainState and
// the checkpoint's "optim.grad_scale_exp") are chosen by the training loop's state from the
// previous step's exact max |g| per tensor (max is order-free too), with headroom for growth. A
// shard whose values would not fit marks the partial sum `overflow`; the step then gets another
// attempt with exponents from this step's max, which always fit. The choice depends only on the
// data, so it is itself deterministic.
//
// Slices: the flat parameter vector is cut into fixed blocks of kSliceBlock elements, and a
// Slicing hands each owner a contiguous run of whole blocks. An ExactGrad may hold one slice
// (`begin`, `sum.size()`): it folds only that range of each shard, but the loss, tokens and shard
// count of every shard. Everything derived per element or per block (the sums, the mean gradient,
// the per-block norms, AdamW) is then the same whoever owns the block, so the result does not
// depend on the number of owners.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "src/aligned.hpp"
#include "src/params.hpp"

namespace cllm {

// The range of the exponents of the grid: 2^e must itself be a normal float.
constexpr int kMinExp = -126, kMaxExp = 126;

// Elements per block. Fixed, whatever the number of owners (it shapes the gradient norm's
// association); a multiple of 16, so that blocks start where tensors may (offsets are multiples
// of 16) and the norm's eight lanes line up with both.
constexpr size_t kSliceBlock = 4096;

// Owner k of `owners` holds blocks [first_block(k), end_block(k)): the blocks dealt as evenly as
// whole blocks allow, in order. More owners than blocks: the extra owners hold nothing (their
// range is empty).
class Slicing {
 public:
  Slicing(size_t total, int owners);
  int owners() const { return owners_; }
  size_t blocks() const { return blocks_; }
  size_t first_block(int k) const { return blocks_ * size_t(k) / size_t(owners_); }
  size_t end_block(int k) const { return first_block(k + 1); }
  size_t begin(int k) const { return std::min(total_, first_block(k) * kSliceBlock); }
  size_t end(int k) const { return std::min(total_, end_block(k) * kSliceBlock); }

 private:
  size_t total_, blocks_;
  int owners_;
};

struct ExactGrad {
  size_t begin = 0;            // first element of the slice held (0: from the start)
  std::vector<int64_t> sum;    // sum[i]: element begin + i, fixed point (two's complement)
  std::vector<float> max_abs;  // per tensor: max |g| over every folded shard (within the slice)
  int64_t loss_fixed = 0;      // sum of shard losses * 2^kLossFracBits
  int64_t tokens = 0;          // tokens behind the loss and gradient
  int32_t shards = 0;          // shards folded in
  bool overflow = false;       // some value did not fit the grid: attempt again
  bool nonfinite = false;      // a NaN/Inf gradient or loss was seen

  static constexpr int kLossFracBits = 16;

  ExactGrad() = default;
  explicit ExactGrad(const ParamLayout& layout) { reset(layout); }
  // Empties the sum (keeping its buffer), for the whole vector or elements [begin, end). Its
  // contents are unspecified until the first shard or merge, which stores rather than adds.
  void reset(const ParamLayout& layout);
  void reset(const ParamLayout& layout, size_t begin, size_t end);
  size_t end() const { return begin + sum.size(); }

  // Folds one shard: `grad` has layout.total() floats (only this slice's range is read),
  // `grad_scale_exp` one exponent per tensor, and `step_shards` is the number of shards in the
  // whole step (it bounds the integer range). One never reset is reset to the whole vector.
  void add_shard(const ParamLayout& layout, const float* grad,
                 const std::vector<int32_t>& grad_scale_exp, int step_shards, double loss_sum,
                 int64_t tokens);
  // Adds another partial sum of the same range. Order-independent.
  void merge(const ExactGrad& other);
  // Adds this slice's range of `wider` (which covers it: e.g. a whole-vector partial sum of a
  // remote node), with its loss, tokens, shard count and flags. Its maxima are taken as they
  // are (they may name tensors outside the slice; maxima are only ever combined by max).
  void merge_range(const ExactGrad& wider);

  double loss_sum() const;  // the exact loss total, as a double
  // The same counts (loss, tokens, shards, maxima, flags) without the sum: what a node reports of
  // a sum it keeps.
  ExactGrad without_sum() const;
};

// Headroom, in powers of two, for a tensor's max |g| to grow from one step to the next before a
// step needs another attempt.
constexpr int kGrowthHeadroomBits = 3;

// Exponents for the next step, from the last step's exact per-tensor maxima (empty = no history:
// assume |g| < 2^8).
std::vector<int32_t> choose_grad_scale_exp(const ParamLayout& layout,
                                           const std::vector<float>& max_abs, int step_shards);

// The mean gradient of one element: sum * 2^-e / tokens, rounded once to float. `factor` is
// mean_factor(e, tokens). Every user of the mean gradient goes through these two.
inline double mean_factor(int32_t grad_scale_exp, int64_t tokens) {
  return std::ldexp(1.0, -grad_scale_exp) / double(tokens);
}
inline float mean_of(int64_t sum, double factor) {
  return float(double(sum) * factor);
}

// The squared L2 norm of the mean gradient per block, for every block of `slice` (whose range
// must be whole blocks of a Slicing, or reach the end of the vector): out[b - first block].
// Each block's value depends only on the block's elements (eight lanes by index, combined in a
// fixed order), so the same block gives the same bits in any slice; combine_block_norms adds
// them in block order. `tokens`: the step's tokens.
void block_norms(const ParamLayout& layout, const ExactGrad& slice,
                 const std::vector<int32_t>& grad_scale_exp, int64_t tokens, double* out);
double combine_block_norms(const std::vector<double>& per_block);

// Converts a whole-vector exact total into the mean gradient (`out`: layout.total() floats,
// padding zero). Returns its squared L2 norm, as block_norms + combine_block_norms give it.
double exact_to_mean_gradient(const ParamLayout& layout, const ExactGrad& total,
                              const std::vector<int32_t>& grad_scale_exp, float* out);

// Calls f(tensor index, first, end) for every part of a tensor inside [begin, end), in order.
template <class F>
void for_each_segment(const ParamLayout& layout, size_t begin, size_t end, F&& f) {
  const auto& ts = layout.tensors();
  for (size_t t = 0; t < ts.size(); ++t) {
    const size_t a = std::max(begin, ts[t].offset), b = std::min(end, ts[t].offset + ts[t].size);
    if (a < b) f(t, a, b);
  }
}

namespace detail {
// The fold of one tensor: acc[i] += round_to_nearest_even(clamp(g[i] * s, -lim, lim)), with
// mx = max(mx, max |g|) over finite values and bad |= any non-finite g. fold_tensor uses AVX-512
// where the build has it; both give exactly the same integers (tested).
// With `store`, acc[i] is overwritten instead of added to.
void fold_tensor(const float* g, int64_t* acc, size_t n, float s, float lim, bool store, float& mx,
                 bool& bad);
void fold_tensor_portable(const float* g, int64_t* acc, size_t n, float s, float lim, bool store,
                          float& mx, bool& bad);
}  // namespace detail

}  // namespace cllm
