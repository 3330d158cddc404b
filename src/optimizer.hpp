#pragma once
// AdamW with decoupled weight decay on 2-D weights, linear warm-up then cosine decay to a floor,
// and global gradient-norm clipping. State is flat buffers in the parameter layout.
#include <cstdint>

#include "src/aligned.hpp"
#include "src/config.hpp"
#include "src/params.hpp"

namespace cllm {

// Learning rate for optimizer step `step` (0-based): linear warm-up over `warmup` steps, then
// cosine from lr to min_lr at total_steps (and min_lr afterwards).
double learning_rate(const OptimConfig& c, int64_t step);

// Factor that scales the gradient so its global norm is at most `clip` (1 when clip <= 0).
double clip_scale(double grad_norm, double clip);

struct AdamState {
  AlignedVector<float> m, v;
  int64_t t = 0;  // updates applied so far
  void init(const ParamLayout& layout) {
    m.assign(layout.total(), 0.0f);
    v.assign(layout.total(), 0.0f);
    t = 0;
  }
};

// One AdamW update: w -= lr * (mhat / (sqrt(vhat) + eps) + wd * w), with g := grad * gscale.
void adamw_update(const ParamLayout& layout, const OptimConfig& c, double lr, double gscale,
                  const float* grad, float* weights, AdamState& state);

}  // namespace cllm
