#include "src/optimizer.hpp"

#include <cmath>

namespace cllm {

double learning_rate(const OptimConfig& c, int64_t step) {
  if (c.warmup > 0 && step < c.warmup) return c.lr * double(step + 1) / double(c.warmup);
  const int64_t decay_steps = c.total_steps - c.warmup;
  if (decay_steps <= 0) return c.lr;
  const double progress = std::min(1.0, double(step - c.warmup) / double(decay_steps));
  const double cosine = 0.5 * (1.0 + std::cos(3.141592653589793 * progress));
  return c.min_lr + (c.lr - c.min_lr) * cosine;
}

double clip_scale(double grad_norm, double clip) {
  if (clip <= 0 || !(grad_norm > clip)) return 1.0;
  return clip / grad_norm;
}

void adamw_update(const ParamLayout& layout, const OptimConfig& c, double lr, double gscale,
                  const float* grad, float* weights, AdamState& st) {
  st.t += 1;
  const float b1 = float(c.beta1), b2 = float(c.beta2);
  const float bc1 = float(1.0 / (1.0 - std::pow(c.beta1, double(st.t))));
  const float bc2 = float(1.0 / (1.0 - std::pow(c.beta2, double(st.t))));
  const float eps = float(c.eps), flr = float(lr), gs = float(gscale);
  for (const auto& t : layout.tensors()) {
    const float wd = t.decay ? float(c.weight_decay) : 0.0f;
    // restrict: the four buffers never overlap, which lets the loop vectorise.
    float* __restrict w = weights + t.offset;
    float* __restrict m = st.m.data() + t.offset;
    float* __restrict v = st.v.data() + t.offset;
    const float* __restrict g = grad + t.offset;
    for (size_t i = 0; i < t.size; ++i) {
      const float gi = g[i] * gs;
      m[i] = b1 * m[i] + (1.0f - b1) * gi;
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      const float mhat = m[i] * bc1, vhat = v[i] * bc2;
      w[i] -= flr * (mhat / (std::sqrt(vhat) + eps) + wd * w[i]);
    }
  }
}

}  // namespace cllm
