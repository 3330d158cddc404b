#pragma once
// The training step, shared by every backend (actor tree, mutex pool, barrier pool, the plain
// reference loop). A backend only decides WHO computes which shard and HOW partial sums travel;
// the numbers all come from here:
//   - ShardWorker::compute: one shard's gradient, folded into an ExactGrad;
//   - TrainState::next_work / TrainState::apply: the training loop's side (exponents, normalise,
//   clip, AdamW).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/aligned.hpp"
#include "src/config.hpp"
#include "src/exact_sum.hpp"
#include "src/model.hpp"
#include "src/optimizer.hpp"
#include "src/params.hpp"
#include "src/sampler.hpp"

namespace cllm {

// Arithmetic of the model's matrix products. fp32: float throughout. bf16: the linear layers'
// products (forward and backward, LM head included) take bfloat16 inputs and accumulate in float;
// weights, optimizer, attention, exact sum and everything else stay float (needs AVX512_BF16).
enum class Precision { fp32, bf16 };
const char* precision_name(Precision p);
Precision parse_precision(const std::string& name);  // throws ConfigError naming --precision

// Everything that determines the numbers of a run (and must match on resume).
struct RunConfig {
  ModelConfig model = model_preset("small");
  BatchConfig batch;
  OptimConfig optim;
  uint64_t seed = 1337;
  int64_t steps = 2000;  // also the learning-rate schedule's length
  Precision precision = Precision::fp32;
  // SHA-256 of the training token ids: a resumed run must train on the same data.
  std::string data_sha256;
  // Activation checkpointing (Model's `recompute`): less memory per computing sphere, more
  // compute, the same bits. A choice of each process, like its thread count: not in to_json, not
  // compared on resume, and a node makes its own.
  bool recompute = false;

  void validate() const;  // throws ConfigError
  nlohmann::json to_json() const;
  static RunConfig from_json(const nlohmann::json& j);  // throws ConfigError
  // Names of the settings that differ from `o` (empty when the runs compute the same numbers).
  std::vector<std::string> differences(const RunConfig& o) const;
};

// What the training loop sends down for one step: which step, and the exact-sum grid to use.
struct StepWork {
  int64_t step = 0;
  int32_t attempt = 0;                  // > 0: the step again, with wider exponents
  int32_t shards = 0;                   // shards in the whole step
  std::vector<int32_t> grad_scale_exp;  // exact-sum exponent per tensor
};

// The numerics of computing shards: a model workspace and gradient buffer, reused from shard to
// shard. Not thread-safe; one per sphere (or pool worker thread).
class ShardWorker {
 public:
  ShardWorker(const RunConfig& cfg, const WindowSampler& sampler);
  // A ShardWorker without a corpus (on a remote node): every compute() gets the shard's tokens.
  explicit ShardWorker(const RunConfig& cfg);
  const ParamLayout& layout() const { return model_.layout(); }
  // Approximate memory one ShardWorker holds for `cfg`: its model workspace and float gradient
  // (for planning, before anything is allocated). A sphere of the root's tree needs nothing more
  // (its gradients go to the owners); a sphere of a remote node's tree, or a barrier-pool thread,
  // also fills an int64 sum of the whole vector (partial_sum_bytes).
  static size_t memory_bytes(const RunConfig& cfg);
  static size_t partial_sum_bytes(const RunConfig& cfg);
  // Computes shard `shard` of `work.step` with `weights` and folds it into `acc`. `tokens`: the
  // shard's windows (micro_batch rows of context + 1 ids) when they were shipped rather than
  // sampled here; they must be what the sampler would give.
  void compute(const float* weights, const StepWork& work, int shard, ExactGrad& acc,
               const int32_t* tokens = nullptr);
  // The two halves of compute(), for sums held as slices: the shard's float gradient (valid in
  // gradient() until the next call) and loss, then its fold into a sum (once per slice).
  void compute_gradient(const float* weights, const StepWork& work, int shard,
                        const int32_t* tokens = nullptr);
  void fold_into(const StepWork& work, ExactGrad& acc);
  const float* gradient() const { return grad_->data(); }
  // The gradient buffer itself, to share with the owners that fold it. compute_gradient()
  // writes into it again: the caller must know that they are done reading.
  std::shared_ptr<const AlignedVector<float>> gradient_ref() const { return grad_; }
  double last_loss() const { return loss_; }
  int64_t shard_token_count() const;
  double last_compute_ms() const { return compute_ms_; }  // forward + backward
  double last_fold_ms() const { return fold_ms_; }        // conversion into the exact sum

 private:
  RunConfig cfg_;
  ShardWorker(const RunConfig& cfg, const WindowSampler* sampler);
  const WindowSampler* sampler_;  // null on a node
  Model<float> model_;
  std::shared_ptr<AlignedVector<float>> grad_;
  std::vector<int32_t> tokens_;
  double compute_ms_ = 0, fold_ms_ = 0, loss_ = 0;
};

// Token ids in one shard's windows: micro_batch rows of context + 1.
inline size_t shard_tokens(const RunConfig& r) {
  return size_t(r.batch.micro_batch) * size_t(r.batch.context + 1);
}

// The data seed the sampler uses for a run seed (decorrelated from the init seed).
uint64_t sampler_seed(uint64_t run_seed);

// A step's exact sums as slices: element k is owner k's slice of Slicing(layout.total(), n) and
// has folded every shard of the step (one whole-vector sum is the case n = 1).
using StepSums = std::vector<ExactGrad>;

// Runs body(k) for every k in [0, n) and returns when every call has returned. A backend runs
// them at once on its threads or owners; body(k) touches only slice k's elements and never
// throws. Empty: one after another on the caller's thread.
using SliceRunner = std::function<void(int n, const std::function<void(int)>& body)>;

struct StepOutcome {
  enum Kind { applied, next_attempt, nonfinite } kind = applied;
  int64_t step = 0;
  double loss = 0;       // mean cross-entropy over the step's tokens
  double grad_norm = 0;  // before clipping
  double lr = 0;
  int64_t tokens = 0;
  double optimizer_ms = 0;  // the per-slice work (norms, AdamW) summed over the slices
};

// The training loop's state: weights, AdamW moments, step counter and the exact-sum history.
class TrainState {
 public:
  TrainState(const RunConfig& cfg);  // fresh weights from cfg.seed
  const RunConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  int64_t step() const { return step_; }  // optimizer steps completed

  // Immutable snapshot of the current weights. It stays valid (and unchanged) for as long as
  // the caller holds it: apply() never writes into a buffer that someone else still holds.
  std::shared_ptr<const AlignedVector<float>> weights() const { return weights_; }

  StepWork next_work() const;
  // Consumes the step's exact sums. `next_attempt`: nothing changed, call next_work() again
  // (the exponents now fit). `nonfinite`: nothing changed; the caller decides to stop. The result
  // is the same bits for any number of slices: the norm is combined per fixed block, in block
  // order, and AdamW is elementwise. `run` spreads the per-slice work (block norms, then AdamW)
  // over the backend's owners.
  StepOutcome apply(const ExactGrad& total, const StepWork& work);
  StepOutcome apply(const StepSums& slices, const StepWork& work, const SliceRunner& run = {});

  // Checkpoint support.
  const AdamState& adam() const { return adam_; }
  const std::vector<int32_t>& grad_scale_exp() const { return grad_scale_exp_; }
  void restore(int64_t step, const float* weights, const float* m, const float* v,
               std::vector<int32_t> grad_scale_exp);

 private:
  RunConfig cfg_;
  ParamLayout layout_;
  std::shared_ptr<AlignedVector<float>> weights_;
  AdamState adam_;
  int64_t step_ = 0;
  std::vector<int32_t>
      grad_scale_exp_;  // exact-sum grid for the next attempt (from the last exact maxima)
  int32_t attempt_ = 0;

  StepOutcome apply_slices(const std::vector<const ExactGrad*>& slices, const StepWork& work,
                           const SliceRunner& run);
};

// The reference: a plain single-threaded loop over every shard of every step with src/ alone.
// Every backend must reproduce its weights bit for bit.
void train_reference(TrainState& state, const WindowSampler& sampler, int64_t steps);

}  // namespace cllm
