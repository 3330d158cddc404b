#include "src/optimizer.hpp"

#include <cmath>

namespace cllm {

double learning_rate(const OptimConfig& c, int64_t step, int64_t total_steps) {
  if (c.warmup > 0 && step < c.warmup) return c.lr * double(step + 1) / double(c.warmup);
  const int64_t decay_steps = total_steps - c.warmup;
  if (decay_steps <= 0) return c.lr;
  const double progress = std::min(1.0, double(step - c.warmup) / double(decay_steps));
  const double cosine = 0.5 * (1.0 + std::cos(3.141592653589793 * progress));
  return c.min_lr + (c.lr - c.min_lr) * cosine;
}

double clip_scale(double grad_norm, double clip) {
  if (clip <= 0 || !(grad_norm > clip)) return 1.0;
  return clip / grad_norm;
}

void adamw_update_slice(const ParamLayout& layout, const OptimConfig& c, double lr, double gscale,
                        int64_t step_t, const ExactGrad& slice,
                        const std::vector<int32_t>& grad_scale_exp, int64_t tokens, float* weights,
                        float* m_all, float* v_all) {
  const float b1 = float(c.beta1), b2 = float(c.beta2);
  const float bc1 = float(1.0 / (1.0 - std::pow(c.beta1, double(step_t))));
  const float bc2 = float(1.0 / (1.0 - std::pow(c.beta2, double(step_t))));
  const float eps = float(c.eps), flr = float(lr), gs = float(gscale);
  const auto& ts = layout.tensors();
  for_each_segment(layout, slice.begin, slice.end(), [&](size_t t, size_t a, size_t z) {
    const float wd = ts[t].decay ? float(c.weight_decay) : 0.0f;
    const double f = mean_factor(grad_scale_exp[t], tokens);
    // restrict: the four buffers never overlap, which lets the loop vectorise.
    float* __restrict w = weights + a;
    float* __restrict m = m_all + a;
    float* __restrict v = v_all + a;
    const int64_t* __restrict s = slice.sum.data() + (a - slice.begin);
    for (size_t i = 0; i < z - a; ++i) {
      const float gi = mean_of(s[i], f) * gs;
      m[i] = b1 * m[i] + (1.0f - b1) * gi;
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      const float mhat = m[i] * bc1, vhat = v[i] * bc2;
      w[i] -= flr * (mhat / (std::sqrt(vhat) + eps) + wd * w[i]);
    }
  });
}

}  // namespace cllm
