#pragma once
// Exact, order-independent summation of shard gradients.
//
// Each shard's float gradient is rounded once onto a per-tensor power-of-two fixed-point grid
// (q = round(g * 2^e)) and summed as 64-bit integers. Integer addition is associative, so the
// total does not depend on tree shape, arrival order, fan-out, backend or restarts.
//
// The exponents e (one per tensor, named grad_scale_exp everywhere: in StepWork, TrainState and
// the checkpoint's "optim.grad_scale_exp") are chosen by the root from the previous step's exact
// max |g| per tensor (max is order-free too), with headroom for growth. A shard whose values would
// not fit marks the partial sum `overflow`; the root then redoes the step with exponents from this
// step's max, which always fit. The choice depends only on the data, so it is itself deterministic.
#include <cstdint>
#include <vector>

#include "src/aligned.hpp"
#include "src/params.hpp"

namespace cllm {

// The range of the exponents of the grid: 2^e must itself be a normal float.
constexpr int kMinExp = -126, kMaxExp = 126;

struct ExactGrad {
  std::vector<int64_t> sum;    // layout.total() fixed-point sums (two's complement, wrapping)
  std::vector<float> max_abs;  // per tensor: max |g| over every folded shard
  int64_t loss_fixed = 0;      // sum of shard losses * 2^kLossFracBits
  int64_t tokens = 0;          // tokens behind the loss and gradient
  int32_t shards = 0;          // shards folded in
  bool overflow = false;       // some value did not fit the grid: redo the step
  bool nonfinite = false;      // a NaN/Inf gradient or loss was seen

  static constexpr int kLossFracBits = 16;

  ExactGrad() = default;
  explicit ExactGrad(const ParamLayout& layout) { reset(layout); }
  // Empties the sum (keeping its buffer). Its contents are unspecified until the first shard
  // or merge, which stores rather than adds.
  void reset(const ParamLayout& layout);

  // Folds one shard: `grad` has layout.total() floats, `grad_scale_exp` one exponent per tensor,
  // and `step_shards` is the number of shards in the whole step (it bounds the integer range).
  void add_shard(const ParamLayout& layout, const float* grad,
                 const std::vector<int32_t>& grad_scale_exp, int step_shards, double loss_sum,
                 int64_t tokens);
  // Adds another partial sum (same layout). Order-independent.
  void merge(const ExactGrad& other);

  double loss_sum() const;  // the exact loss total, as a double
};

// Headroom, in powers of two, for a tensor's max |g| to grow from one step to the next before a
// redo is needed.
constexpr int kGrowthHeadroomBits = 3;

// Exponents for the next step, from the last step's exact per-tensor maxima (empty = no history:
// assume |g| < 2^8).
std::vector<int32_t> choose_grad_scale_exp(const ParamLayout& layout,
                                           const std::vector<float>& max_abs, int step_shards);

// Converts an exact total into the mean gradient: out = sum * 2^-e / tokens, in float. Returns
// the squared L2 norm of `out` (accumulated in double, in a fixed order).
double exact_to_mean_gradient(const ParamLayout& layout, const ExactGrad& total,
                              const std::vector<int32_t>& grad_scale_exp, float* out);

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
