#pragma once
// AdamW with decoupled weight decay on 2-D weights, linear warm-up then cosine decay to a floor,
// and global gradient-norm clipping. State is flat buffers in the parameter layout.
#include <cstdint>

#include "src/aligned.hpp"
#include "src/config.hpp"
#include "src/exact_sum.hpp"
#include "src/params.hpp"

namespace cllm {

// Learning rate for optimizer step `step` (0-based): linear warm-up over `warmup` steps, then
// cosine from lr to min_lr at total_steps (the run's steps) (and min_lr afterwards).
double learning_rate(const OptimConfig& c, int64_t step, int64_t total_steps);

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

// Update number `t` (1 for the first) of AdamW on one slice's elements: w -= lr * (mhat /
// (sqrt(vhat) + eps) + wd * w), with g := mean gradient * gscale, the mean gradient taken from the
// slice's exact sum (mean_of). `weights`, `m`, `v` are whole vectors; only the tensors' elements
// in [slice.begin, slice.end()) are touched, so owners of different slices may run at once.
// Elementwise: the same bits whoever updates an element.
void adamw_update_slice(const ParamLayout& layout, const OptimConfig& c, double lr, double gscale,
                        int64_t t, const ExactGrad& slice,
                        const std::vector<int32_t>& grad_scale_exp, int64_t tokens, float* weights,
                        float* m, float* v);

}  // namespace cllm
