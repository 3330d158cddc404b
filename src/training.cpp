#include "src/training.hpp"

#include <chrono>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "src/clock.hpp"
#include "src/gemm.hpp"
#include "src/rng.hpp"

namespace cllm {

namespace {
// Whether `p` is the only reference to its buffer, such that writing into it cannot race with a
// former holder's reads. use_count() alone is not enough: it is a relaxed load, so seeing 1 does
// not order a holder's reads before our writes. Holders do drop references after their results
// reached the training loop (CAF destroys a mailbox element, with the weights it carries, after the
// handler has replied), so that order is not given by the messages either. Copying the pointer
// is an acquire-release increment of the same counter: it reads the count after every earlier
// release (each holder's decrement is a release), so those releases happen before it and every
// former holder's reads happen before our writes. (A fence would also do in C++ terms, but
// ThreadSanitizer does not model fences; this form it checks.) Once 1 is seen, no new holder can
// appear: only we could hand out a copy.
template <class T>
bool sole_owner(const std::shared_ptr<T>& p) {
  if (p.use_count() != 1) return false;
  const std::shared_ptr<T> acquire = p;
  return acquire.use_count() == 2;
}

}  // namespace

const char* precision_name(Precision p) {
  return p == Precision::bf16 ? "bf16" : "fp32";
}

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  throw ConfigError(fmt::format("--precision must be fp32 or bf16 (got '{}')", name));
}

void RunConfig::validate() const {
  model.validate();
  if (precision == Precision::bf16 && !gemm::has_bf16())
    throw ConfigError(
        "--precision bf16 needs a CPU with AVX512_BF16 and a build for it (-march=native on "
        "such a CPU); this one has none: use --precision fp32");
  batch.validate(model);
  optim.validate();
  if (steps < 1) throw ConfigError(fmt::format("steps must be >= 1 (got {})", steps));
  if (batch.shards() > (1 << 20)) throw ConfigError("too many shards per step (max 2^20)");
}

nlohmann::json RunConfig::to_json() const {
  return {{"model", model_json(model)},
          {"batch", batch.batch},
          {"micro_batch", batch.micro_batch},
          {"context", batch.context},
          {"lr", optim.lr},
          {"min_lr", optim.min_lr},
          {"warmup", optim.warmup},
          {"beta1", optim.beta1},
          {"beta2", optim.beta2},
          {"eps", optim.eps},
          {"weight_decay", optim.weight_decay},
          {"clip", optim.clip},
          {"seed", seed},
          {"steps", steps},
          {"precision", precision_name(precision)},
          {"data_sha256", data_sha256}};
}

RunConfig RunConfig::from_json(const nlohmann::json& j) {
  try {
    RunConfig c;
    const auto& m = j.at("model");
    c.model.vocab = m.at("vocab"), c.model.d_model = m.at("d_model");
    c.model.layers = m.at(layers_key(m)), c.model.n_heads = m.at("n_heads");
    c.model.context = m.at("context");
    c.model.vocab_padded = m.value("vocab_padded", 0);
    c.batch.batch = j.at("batch"), c.batch.micro_batch = j.at("micro_batch");
    c.batch.context = j.at("context");
    c.optim.lr = j.at("lr"), c.optim.min_lr = j.at("min_lr"), c.optim.warmup = j.at("warmup");
    c.optim.beta1 = j.at("beta1");  // (older files also hold total_steps, always = steps)
    c.optim.beta2 = j.at("beta2"), c.optim.eps = j.at("eps");
    c.optim.weight_decay = j.at("weight_decay"), c.optim.clip = j.at("clip");
    c.seed = j.at("seed"), c.steps = j.at("steps");
    c.data_sha256 = j.value("data_sha256", std::string());
    // Runs from before the setting existed computed in fp32.
    c.precision = parse_precision(j.value("precision", std::string("fp32")));
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(std::string("run configuration is incomplete or malformed: ") + e.what());
  }
}

std::vector<std::string> RunConfig::differences(const RunConfig& o) const {
  std::vector<std::string> out;
  const auto a = to_json(), b = o.to_json();
  for (auto it = a.begin(); it != a.end(); ++it)
    if (b.value(it.key(), nlohmann::json()) != it.value() &&
        !(it.key() == "data_sha256" && (data_sha256.empty() || o.data_sha256.empty())))
      out.push_back(it.key());
  return out;
}

uint64_t sampler_seed(uint64_t run_seed) {
  return hash_words(run_seed, 0xda7a5eedULL);
}

ShardWorker::ShardWorker(const RunConfig& cfg, const WindowSampler* sampler)
    : cfg_(cfg),
      sampler_(sampler),
      model_(cfg.model, cfg.batch.micro_batch, cfg.batch.context, cfg.precision == Precision::bf16,
             cfg.recompute),
      grad_(std::make_shared<AlignedVector<float>>(model_.layout().total())),
      tokens_(size_t(cfg.batch.micro_batch) * (cfg.batch.context + 1)) {}

ShardWorker::ShardWorker(const RunConfig& cfg, const WindowSampler& sampler)
    : ShardWorker(cfg, &sampler) {}

ShardWorker::ShardWorker(const RunConfig& cfg) : ShardWorker(cfg, nullptr) {}

size_t ShardWorker::memory_bytes(const RunConfig& cfg) {
  // The model's workspace (its one size table) and the shard's gradient (float).
  const size_t params = ParamLayout(cfg.model).total();
  return Model<float>::workspace_bytes(cfg.model, cfg.batch.micro_batch, cfg.batch.context,
                                       cfg.recompute) +
         params * sizeof(float);
}

size_t ShardWorker::partial_sum_bytes(const RunConfig& cfg) {
  return ParamLayout(cfg.model).total() * sizeof(int64_t);
}

void ShardWorker::compute(const float* weights, const StepWork& work, int shard, ExactGrad& acc,
                          const int32_t* tokens) {
  compute_gradient(weights, work, shard, tokens);
  fold_ms_ = 0;
  fold_into(work, acc);
}

void ShardWorker::compute_gradient(const float* weights, const StepWork& work, int shard,
                                   const int32_t* tokens) {
  const int mb = cfg_.batch.micro_batch;
  auto t0 = SteadyClock::now();
  if (!tokens) {
    if (!sampler_) throw std::logic_error("ShardWorker: no sampler and no shipped tokens");
    sampler_->fill(uint64_t(work.step), uint64_t(shard) * mb, mb, tokens_.data());
    tokens = tokens_.data();
  }
  loss_ = model_.forward_backward(weights, tokens, mb, grad_->data());
  compute_ms_ = ms_since(t0);
  fold_ms_ = 0;
}

int64_t ShardWorker::shard_token_count() const {
  return int64_t(cfg_.batch.micro_batch) * cfg_.batch.context;
}

void ShardWorker::fold_into(const StepWork& work, ExactGrad& acc) {
  const auto t0 = SteadyClock::now();
  acc.add_shard(model_.layout(), grad_->data(), work.grad_scale_exp, work.shards, loss_,
                shard_token_count());
  fold_ms_ += ms_since(t0);
}

TrainState::TrainState(const RunConfig& cfg)
    : cfg_(cfg),
      layout_(cfg.model),
      weights_(std::make_shared<AlignedVector<float>>(layout_.total())) {
  cfg_.validate();
  init_parameters(layout_, cfg.seed, weights_->data());
  adam_.init(layout_);
  grad_scale_exp_ = choose_grad_scale_exp(layout_, {}, cfg.batch.shards());
}

StepWork TrainState::next_work() const {
  StepWork w;
  w.step = step_;
  w.attempt = attempt_;
  w.shards = cfg_.batch.shards();
  w.grad_scale_exp = grad_scale_exp_;
  return w;
}

StepOutcome TrainState::apply(const ExactGrad& total, const StepWork& work) {
  return apply_slices({&total}, work, {});
}

StepOutcome TrainState::apply(const StepSums& slices, const StepWork& work,
                              const SliceRunner& run) {
  std::vector<const ExactGrad*> p;
  for (const ExactGrad& s : slices) p.push_back(&s);
  return apply_slices(p, work, run);
}

StepOutcome TrainState::apply_slices(const std::vector<const ExactGrad*>& slices,
                                     const StepWork& work, const SliceRunner& run_given) {
  StepOutcome out;
  out.step = work.step;
  if (work.step != step_ || work.grad_scale_exp != grad_scale_exp_)
    throw std::logic_error("apply() got the result of another step or grid");
  const int n = int(slices.size());
  if (n < 1) throw std::logic_error("apply() got no sums");
  const Slicing slicing(layout_.total(), n);
  // What every slice shares (each folded every shard): loss, tokens, shards; flags and maxima are
  // combined over the slices (or and max: order-free).
  const ExactGrad& first = *slices[0];
  bool nonfinite = false, overflow = false;
  std::vector<float> max_abs(layout_.tensors().size(), 0.0f);
  for (int k = 0; k < n; ++k) {
    const ExactGrad& s = *slices[size_t(k)];
    if (s.shards != cfg_.batch.shards())
      throw std::logic_error(fmt::format("step {}: slice {} summed {} shards, expected {}",
                                         work.step, k, s.shards, cfg_.batch.shards()));
    if (s.begin != slicing.begin(k) || s.end() != slicing.end(k) ||
        s.max_abs.size() != max_abs.size())
      throw std::logic_error(
          fmt::format("step {}: slice {} of {} holds the wrong range", work.step, k, n));
    if (s.tokens != first.tokens || s.loss_fixed != first.loss_fixed)
      throw std::logic_error(fmt::format("step {}: slices disagree on the step's loss", work.step));
    nonfinite |= s.nonfinite;
    overflow |= s.overflow;
    for (size_t t = 0; t < max_abs.size(); ++t) max_abs[t] = std::max(max_abs[t], s.max_abs[t]);
  }
  out.tokens = first.tokens;
  if (nonfinite) {
    out.kind = StepOutcome::nonfinite;
    return out;
  }
  if (overflow) {
    // The maxima of this attempt are exact; a grid chosen from them always fits.
    grad_scale_exp_ = choose_grad_scale_exp(layout_, max_abs, cfg_.batch.shards());
    ++attempt_;
    out.kind = StepOutcome::next_attempt;
    return out;
  }
  if (first.tokens <= 0) throw std::logic_error("apply() got sums of no tokens");
  const SliceRunner run = run_given ? run_given : [](int count, const std::function<void(int)>& f) {
    for (int k = 0; k < count; ++k) f(k);
  };
  out.loss = first.loss_sum() / double(first.tokens);
  std::vector<double> per_block(slicing.blocks());
  std::vector<double> slice_ms(size_t(n), 0.0);  // element k written by slice k's runner only
  run(n, [&](int k) {
    const auto t0 = SteadyClock::now();
    block_norms(layout_, *slices[size_t(k)], grad_scale_exp_, first.tokens,
                per_block.data() + slicing.first_block(k));
    slice_ms[size_t(k)] += ms_since(t0);
  });
  out.grad_norm = std::sqrt(combine_block_norms(per_block));
  if (!std::isfinite(out.grad_norm) || !std::isfinite(out.loss)) {
    out.kind = StepOutcome::nonfinite;
    return out;
  }
  out.lr = learning_rate(cfg_.optim, step_, cfg_.steps);
  // Copy-on-write: never touch a weights buffer that a worker may still be reading.
  if (!sole_owner(weights_)) weights_ = std::make_shared<AlignedVector<float>>(*weights_);
  const double gscale = clip_scale(out.grad_norm, cfg_.optim.clip);
  const int64_t t = ++adam_.t;
  float* w = weights_->data();
  run(n, [&](int k) {
    const auto t0 = SteadyClock::now();
    adamw_update_slice(layout_, cfg_.optim, out.lr, gscale, t, *slices[size_t(k)], grad_scale_exp_,
                       first.tokens, w, adam_.m.data(), adam_.v.data());
    slice_ms[size_t(k)] += ms_since(t0);
  });
  for (double ms : slice_ms) out.optimizer_ms += ms;
  grad_scale_exp_ = choose_grad_scale_exp(layout_, max_abs, cfg_.batch.shards());
  attempt_ = 0;
  ++step_;
  out.kind = StepOutcome::applied;
  return out;
}

void TrainState::restore(int64_t step, const float* w, const float* m, const float* v,
                         std::vector<int32_t> grad_scale_exp) {
  const size_t n = layout_.total();
  weights_ = std::make_shared<AlignedVector<float>>(w, w + n);
  std::memcpy(adam_.m.data(), m, n * sizeof(float));
  std::memcpy(adam_.v.data(), v, n * sizeof(float));
  adam_.t = step;
  step_ = step;
  attempt_ = 0;
  if (grad_scale_exp.empty())
    grad_scale_exp = choose_grad_scale_exp(layout_, {}, cfg_.batch.shards());
  if (grad_scale_exp.size() != layout_.tensors().size())
    throw ConfigError("checkpoint's exact-sum state does not match the model");
  grad_scale_exp_ = std::move(grad_scale_exp);
}

void train_reference(TrainState& state, const WindowSampler& sampler, int64_t steps) {
  ShardWorker worker(state.config(), sampler);
  ExactGrad acc(state.layout());
  const int64_t end = state.step() + steps;
  while (state.step() < end) {
    const StepWork work = state.next_work();
    acc.reset(state.layout());
    const auto w = state.weights();
    for (int s = 0; s < work.shards; ++s) worker.compute(w->data(), work, s, acc);
    if (state.apply(acc, work).kind == StepOutcome::nonfinite)
      throw std::runtime_error(fmt::format("step {}: non-finite loss or gradient", work.step));
  }
}

}  // namespace cllm
