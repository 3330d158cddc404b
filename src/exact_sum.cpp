#include "src/exact_sum.hpp"

#include <algorithm>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <cmath>
#include <stdexcept>

namespace cllm {

namespace {
// Integers of one shard stay below 2^(62 - k) with 2^k >= step shards, so any sum of the step's
// shards stays below 2^62 and can never wrap.
int shard_bits(int step_shards) {
  int k = 0;
  while ((1LL << k) < step_shards) ++k;
  return k;
}
}  // namespace

Slicing::Slicing(size_t total, int owners)
    : total_(total), blocks_((total + kSliceBlock - 1) / kSliceBlock), owners_(owners) {
  if (owners < 1) throw std::invalid_argument("slicing: at least one owner");
}

void ExactGrad::reset(const ParamLayout& layout) {
  reset(layout, 0, layout.total());
}

void ExactGrad::reset(const ParamLayout& layout, size_t first, size_t end) {
  if (first > end || end > layout.total())
    throw std::invalid_argument("exact sum: slice outside the parameter vector");
  // No zero fill: the first shard folded in stores instead of adding (saves a pass over
  // megabytes per shard and per sphere).
  begin = first;
  sum.resize(end - first);
  max_abs.assign(layout.tensors().size(), 0.0f);
  loss_fixed = tokens = 0;
  shards = 0;
  overflow = nonfinite = false;
}

void ExactGrad::add_shard(const ParamLayout& layout, const float* grad,
                          const std::vector<int32_t>& grad_scale_exp, int step_shards, double loss,
                          int64_t ntok) {
  if (max_abs.empty()) reset(layout);  // never reset: the whole vector
  const bool store = shards == 0;
  if (grad_scale_exp.size() != layout.tensors().size())
    throw std::invalid_argument("exact sum: one exponent per tensor required");
  if (end() > layout.total()) throw std::invalid_argument("exact sum: slice outside the layout");
  const double limit = std::ldexp(1.0, 62 - shard_bits(step_shards));
  // One pass per tensor part: convert and add optimistically while tracking max |g| and
  // finiteness. A value that does not fit is clamped (the partial sum is then flagged and the
  // step attempted again), so the conversion is always defined and the integers never wrap.
  for_each_segment(layout, begin, end(), [&](size_t t, size_t a, size_t b) {
    const float s = std::ldexp(1.0f, grad_scale_exp[t]);
    float mx = 0;
    bool bad = false;
    detail::fold_tensor(grad + a, sum.data() + (a - begin), b - a, s, float(limit), store, mx, bad);
    if (bad) {
      nonfinite = true;
      return;
    }
    max_abs[t] = std::max(max_abs[t], mx);
    if (double(mx) * double(s) >= limit) overflow = true;
  });
  if (store) {  // padding between tensors is never written by the fold: keep it zero
    size_t done = begin;
    for_each_segment(layout, begin, end(), [&](size_t, size_t a, size_t b) {
      std::fill(sum.begin() + std::ptrdiff_t(done - begin), sum.begin() + std::ptrdiff_t(a - begin),
                0);
      done = b;
    });
    std::fill(sum.begin() + std::ptrdiff_t(done - begin), sum.end(), 0);
  }
  if (!std::isfinite(loss)) {
    nonfinite = true;
  } else {
    // The same rule as the gradients: below 2^(62 - k) per shard, so the step's sum never wraps.
    // A loss that large (a diverged run) cannot be fixed by a wider grid: the step is refused.
    const double lf = std::ldexp(loss, kLossFracBits);
    if (std::fabs(lf) >= limit)
      nonfinite = true;
    else
      loss_fixed = int64_t(uint64_t(loss_fixed) + uint64_t(std::llround(lf)));
  }
  tokens += ntok;
  shards += 1;
}

void ExactGrad::merge(const ExactGrad& o) {
  if (o.shards == 0) return;
  if (shards == 0) {  // nothing here yet (the sum's contents are unspecified): take a copy
    *this = o;
    return;
  }
  if (o.begin != begin || o.sum.size() != sum.size() || o.max_abs.size() != max_abs.size())
    throw std::invalid_argument("exact sum: merging partial sums of different ranges or layouts");
  uint64_t* a = reinterpret_cast<uint64_t*>(sum.data());
  const uint64_t* b = reinterpret_cast<const uint64_t*>(o.sum.data());
  for (size_t i = 0; i < sum.size(); ++i) a[i] += b[i];
  for (size_t t = 0; t < max_abs.size(); ++t) max_abs[t] = std::max(max_abs[t], o.max_abs[t]);
  loss_fixed = int64_t(uint64_t(loss_fixed) + uint64_t(o.loss_fixed));
  tokens += o.tokens;
  shards += o.shards;
  overflow |= o.overflow;
  nonfinite |= o.nonfinite;
}

ExactGrad ExactGrad::without_sum() const {
  ExactGrad g;
  g.begin = begin, g.max_abs = max_abs, g.loss_fixed = loss_fixed, g.tokens = tokens;
  g.shards = shards, g.overflow = overflow, g.nonfinite = nonfinite;
  return g;
}

void ExactGrad::merge_range(const ExactGrad& o) {
  if (o.shards == 0) return;
  if (o.begin > begin || o.end() < end() || o.max_abs.size() != max_abs.size())
    throw std::invalid_argument("exact sum: the partial sum does not cover the slice");
  const bool store = shards == 0;
  uint64_t* a = reinterpret_cast<uint64_t*>(sum.data());
  const uint64_t* b = reinterpret_cast<const uint64_t*>(o.sum.data()) + (begin - o.begin);
  if (store)
    std::copy(b, b + sum.size(), a);
  else
    for (size_t i = 0; i < sum.size(); ++i) a[i] += b[i];
  for (size_t t = 0; t < max_abs.size(); ++t) max_abs[t] = std::max(max_abs[t], o.max_abs[t]);
  loss_fixed = int64_t(uint64_t(loss_fixed) + uint64_t(o.loss_fixed));
  tokens += o.tokens;
  shards += o.shards;
  overflow |= o.overflow;
  nonfinite |= o.nonfinite;
}

// acc[i] += round_to_nearest_even(clamp(g[i] * s, -lim, lim)); mx = max |g|; bad = any non-finite.
// Both versions compute exactly the same integers; the AVX-512 one is ~2x faster.
void detail::fold_tensor(const float* __restrict g, int64_t* __restrict acc, size_t n, float s,
                         float lim, bool store, float& mx, bool& bad) {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  const __m512 vs = _mm512_set1_ps(s), vlim = _mm512_set1_ps(lim), vnlim = _mm512_set1_ps(-lim);
  const __m512 fmax = _mm512_set1_ps(3.4028234e38f);
  __m512 vmx = _mm512_setzero_ps();
  __mmask16 badm = 0;
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 a = _mm512_abs_ps(gv);
    vmx = _mm512_max_ps(a, vmx);  // a NaN in `a` returns vmx: NaNs never enter the max
    badm |= _mm512_mask_cmp_ps_mask(m, a, fmax, _CMP_NLE_UQ);  // Inf or NaN
    __m512 x = _mm512_mul_ps(gv, vs);
    x = _mm512_min_ps(x, vlim);  // NaN -> lim
    x = _mm512_max_ps(x, vnlim);
    const __m512i q0 = _mm512_cvtps_epi64(_mm512_castps512_ps256(x));  // MXCSR: nearest-even
    const __m512i q1 = _mm512_cvtps_epi64(_mm512_extractf32x8_ps(x, 1));
    const __mmask8 m0 = __mmask8(m & 0xFF), m1 = __mmask8(m >> 8);
    const __m512i a0 = store ? _mm512_setzero_si512() : _mm512_maskz_loadu_epi64(m0, acc + i);
    const __m512i a1 = store ? _mm512_setzero_si512() : _mm512_maskz_loadu_epi64(m1, acc + i + 8);
    _mm512_mask_storeu_epi64(acc + i, m0, _mm512_add_epi64(a0, q0));
    _mm512_mask_storeu_epi64(acc + i + 8, m1, _mm512_add_epi64(a1, q1));
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, vmx);  // (_mm512_reduce_max_ps trips a GCC 12 false warning)
  for (float l : lanes) mx = std::max(mx, l);
  bad = bad || badm != 0;
#else
  fold_tensor_portable(g, acc, n, s, lim, store, mx, bad);
#endif
}

void detail::fold_tensor_portable(const float* __restrict g, int64_t* __restrict acc, size_t n,
                                  float s, float lim, bool store, float& mx, bool& bad) {
  for (size_t k = 0; k < n; ++k) {
    const float a = std::fabs(g[k]);
    if (!(a <= 3.4028234e38f))
      bad = true;
    else
      mx = std::max(mx, a);
  }
  for (size_t i = 0; i < n; ++i) {
    float x = g[i] * s;
    x = !(x <= lim) ? lim : x;
    x = !(x >= -lim) ? -lim : x;
    const int64_t q = int64_t(std::nearbyint(x));
    acc[i] = store ? q : int64_t(uint64_t(acc[i]) + uint64_t(q));
  }
}
double ExactGrad::loss_sum() const {
  return std::ldexp(double(loss_fixed), -kLossFracBits);
}

std::vector<int32_t> choose_grad_scale_exp(const ParamLayout& layout,
                                           const std::vector<float>& max_abs, int step_shards) {
  const int k = shard_bits(step_shards);
  std::vector<int32_t> e(layout.tensors().size());
  for (size_t t = 0; t < e.size(); ++t) {
    const float m = t < max_abs.size() ? max_abs[t] : 0.0f;
    // m < 2^(top): allow growth to 2^(top + headroom) and keep that below 2^(62 - k).
    const int top = (max_abs.empty()) ? 8 : (m > 0 ? std::ilogb(m) + 1 : -40);
    e[t] = std::clamp(62 - k - (top + kGrowthHeadroomBits), kMinExp, kMaxExp);
  }
  return e;
}

namespace {
// The squared norm of block `b`'s mean gradient, also written to out[i - out_begin] when `out` is
// given. Lanes by element index: tensor parts start at multiples of 16 and blocks at multiples of
// kSliceBlock, so lane i % 8 is the same whichever slice holds the block.
double block_norm(const ParamLayout& layout, const ExactGrad& g, const std::vector<int32_t>& e,
                  int64_t tokens, size_t b, float* out, size_t out_begin) {
  const size_t lo = b * kSliceBlock, hi = std::min(layout.total(), lo + kSliceBlock);
  double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for_each_segment(layout, lo, hi, [&](size_t t, size_t a, size_t z) {
    const double f = mean_factor(e[t], tokens);
    const int64_t* __restrict s = g.sum.data() + (a - g.begin);
    const size_t n = z - a, n8 = n / 8 * 8;
    if (out) {
      float* __restrict o = out + (a - out_begin);
      for (size_t i = 0; i < n; ++i) o[i] = mean_of(s[i], f);
    }
    for (size_t i = 0; i < n8; i += 8)
      for (size_t k = 0; k < 8; ++k) {
        const double x = double(mean_of(s[i + k], f));
        lanes[k] += x * x;
      }
    for (size_t i = n8; i < n; ++i) {
      const double x = double(mean_of(s[i], f));
      lanes[i % 8] += x * x;
    }
  });
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

void check_block_range(const ParamLayout& layout, const ExactGrad& g) {
  if (g.begin % kSliceBlock != 0 || (g.end() % kSliceBlock != 0 && g.end() != layout.total()) ||
      g.end() > layout.total())
    throw std::invalid_argument("exact sum: a slice must be whole blocks");
}
}  // namespace

void block_norms(const ParamLayout& layout, const ExactGrad& slice,
                 const std::vector<int32_t>& grad_scale_exp, int64_t tokens, double* out) {
  if (slice.sum.empty()) return;  // an owner without blocks
  check_block_range(layout, slice);
  const size_t b0 = slice.begin / kSliceBlock;
  const size_t b1 = (slice.end() + kSliceBlock - 1) / kSliceBlock;
  for (size_t b = b0; b < b1; ++b)
    out[b - b0] = block_norm(layout, slice, grad_scale_exp, tokens, b, nullptr, 0);
}

double combine_block_norms(const std::vector<double>& per_block) {
  double s = 0;
  for (double x : per_block) s += x;
  return s;
}

double exact_to_mean_gradient(const ParamLayout& layout, const ExactGrad& total,
                              const std::vector<int32_t>& grad_scale_exp, float* out) {
  if (total.tokens <= 0) throw std::invalid_argument("exact sum holds no tokens");
  if (total.begin != 0 || total.sum.size() != layout.total())
    throw std::invalid_argument("exact sum: the mean gradient needs the whole vector");
  std::fill(out, out + layout.total(), 0.0f);  // padding
  std::vector<double> per_block(Slicing(layout.total(), 1).blocks());
  for (size_t b = 0; b < per_block.size(); ++b)
    per_block[b] = block_norm(layout, total, grad_scale_exp, total.tokens, b, out, 0);
  return combine_block_norms(per_block);
}

}  // namespace cllm
