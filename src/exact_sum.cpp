#include "src/exact_sum.hpp"

#include <algorithm>
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
constexpr int kMinExp = -126, kMaxExp = 126;  // 2^e must itself be a normal float
}  // namespace

void ExactGrad::reset(const ParamLayout& layout) {
  sum.assign(layout.total(), 0);
  max_abs.assign(layout.tensors().size(), 0.0f);
  loss_fixed = tokens = 0;
  shards = 0;
  overflow = nonfinite = false;
}

void ExactGrad::add_shard(const ParamLayout& layout, const float* grad,
                          const std::vector<int32_t>& exps, int step_shards, double loss,
                          int64_t ntok) {
  if (sum.size() != layout.total()) reset(layout);
  if (exps.size() != layout.tensors().size())
    throw std::invalid_argument("exact sum: one exponent per tensor required");
  const double limit = std::ldexp(1.0, 62 - shard_bits(step_shards));
  const auto& ts = layout.tensors();
  for (size_t t = 0; t < ts.size(); ++t) {
    const float* g = grad + ts[t].offset;
    const size_t n = ts[t].size;
    float mx = 0;
    bool finite = true;
    for (size_t i = 0; i < n; ++i) {
      const float a = std::fabs(g[i]);
      mx = std::max(mx, a);
      finite &= std::isfinite(g[i]);
    }
    if (!finite) {
      nonfinite = true;
      continue;
    }
    max_abs[t] = std::max(max_abs[t], mx);
    const float s = std::ldexp(1.0f, exps[t]);
    if (double(mx) * double(s) >= limit) {
      overflow = true;
      continue;
    }
    // Vectorises to round + float->int64 conversion + 64-bit adds.
    uint64_t* acc = reinterpret_cast<uint64_t*>(sum.data()) + ts[t].offset;
    for (size_t i = 0; i < n; ++i)
      acc[i] += static_cast<uint64_t>(static_cast<int64_t>(std::nearbyint(g[i] * s)));
  }
  if (!std::isfinite(loss)) {
    nonfinite = true;
  } else {
    const double lf = std::ldexp(loss, kLossFracBits);
    if (std::fabs(lf) >= 0x1p62) overflow = true;  // never for realistic losses; refuse loudly
    else loss_fixed = int64_t(uint64_t(loss_fixed) + uint64_t(std::llround(lf)));
  }
  tokens += ntok;
  shards += 1;
}

void ExactGrad::merge(const ExactGrad& o) {
  if (o.shards == 0) return;
  if (shards == 0 && sum.empty()) {
    *this = o;
    return;
  }
  if (o.sum.size() != sum.size() || o.max_abs.size() != max_abs.size())
    throw std::invalid_argument("exact sum: merging partial sums of different layouts");
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

double ExactGrad::loss_sum() const { return std::ldexp(double(loss_fixed), -kLossFracBits); }

std::vector<int32_t> choose_exponents(const ParamLayout& layout, const std::vector<float>& max_abs,
                                      int step_shards) {
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

double exact_to_mean_gradient(const ParamLayout& layout, const ExactGrad& total,
                              const std::vector<int32_t>& exps, float* out) {
  if (total.tokens <= 0) throw std::invalid_argument("exact sum holds no tokens");
  std::fill(out, out + layout.total(), 0.0f);
  double norm_sq = 0;
  const auto& ts = layout.tensors();
  for (size_t t = 0; t < ts.size(); ++t) {
    const double f = std::ldexp(1.0, -exps[t]) / double(total.tokens);
    const int64_t* s = total.sum.data() + ts[t].offset;
    float* o = out + ts[t].offset;
    double acc = 0;
    for (size_t i = 0; i < ts[t].size; ++i) {
      o[i] = float(double(s[i]) * f);
      acc += double(o[i]) * double(o[i]);
    }
    norm_sq += acc;
  }
  return norm_sq;
}

}  // namespace cllm
