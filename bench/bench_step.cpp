// cllm-bench-step: the cost of one whole training step on ONE thread, and of generation.
//
// A step is exactly what every backend does for one optimizer update, minus the messaging:
//   for every shard: ShardWorker::compute (sampler fill + forward + backward + exact fold),
//   then TrainState::apply (exact total -> mean gradient, norm, clip, AdamW).
// The data is a synthetic stream of pseudo-random bytes from a fixed seed, so no corpus is needed
// and every run computes the same numbers.
//
// FLOPs are counted analytically, per trained token, forward + backward:
//   6 * N_matmul + 12 * L * T * d
// where N_matmul = L * 12 * d^2 + V * d are the weights of the matrix products (QKV 3d^2, output
// projection d^2, MLP 8d^2 per layer, and the tied LM head V*d once); embedding lookups, biases,
// LayerNorm, GELU, softmax and the optimizer are not counted. 6 = 2 (forward) + 4 (backward) per
// weight. Attention: QK^T and PV are 2*T*d each forward per token per layer (the model computes
// the full T x T score matrix, masked afterwards), times 3 for forward + backward: 12 * L * T * d.
// (Counting ALL parameters instead of N_matmul, as DESIGN.md's 5.84 MFLOP/token for `small` does,
// adds 6 * (N_total - N_matmul).)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.hpp"
#include "src/config.hpp"
#include "src/exact_sum.hpp"
#include "src/gemm.hpp"
#include "src/generate.hpp"
#include "src/model.hpp"
#include "src/params.hpp"
#include "src/sampler.hpp"
#include "src/sha256.hpp"
#include "src/step_fingerprint.hpp"
#include "src/training.hpp"

using namespace cllm;
using namespace cllm::bench;

namespace {

struct Options {
  std::string model = "small";
  int d_model = 0, layers = 0, heads = 0;  // 0 = the preset's
  int batch = 16;
  int micro_batch = 16;
  int context = 128;
  int steps = 10;
  int warmup = 2;
  int repeats = 3;
  int gen_tokens = 256;
  int compare_micro = 2;
  std::string precision = "fp32";
  std::string gen_precision = "fp32";
  std::string json;
};

const char* kUsage =
    "usage: cllm-bench-step [options]\n"
    "Times whole training steps (every shard's forward+backward, exact fold, optimizer) on one\n"
    "thread, for --micro-batch and for micro-batch 2, and KV-cache generation.\n";

Options parse(int argc, char** argv) {
  Options o;
  cli::OptionTable t;
  t.add("--model", "tiny|small|base|gpt2|gpt2-medium", "model preset (its vocabulary)", o.model,
        [&o](const std::string& v) { o.model = v; });
  add_int(t, "--d-model", "embedding width (overrides the preset; 0 = the preset's)", o.d_model, 0);
  add_int(t, "--layers", "blocks (overrides the preset)", o.layers, 0);
  add_int(t, "--heads", "attention heads (overrides the preset)", o.heads, 0);
  add_int(t, "--batch", "sequences per step", o.batch);
  add_int(t, "--micro-batch", "sequences per shard (see --compare-micro)", o.micro_batch);
  add_int(t, "--context", "tokens per sequence", o.context);
  add_int(t, "--steps", "timed steps per repeat", o.steps, 1);
  add_int(t, "--warmup", "untimed steps first", o.warmup, 0);
  add_int(t, "--repeats", "repeats of --steps timed steps", o.repeats, 1);
  add_int(t, "--gen-tokens", "tokens to generate (0 = no generation)", o.gen_tokens, 0);
  add_int(t, "--compare-micro", "also time this micro-batch (0 = only --micro-batch)",
          o.compare_micro, 0);
  t.add("--precision", "fp32|bf16", "arithmetic of the linear layers' products", o.precision,
        [&o](const std::string& v) { o.precision = v; });
  t.add("--gen-precision", "fp32|bf16", "decoding weights of the generation (bf16: a copy)",
        o.gen_precision, [&o](const std::string& v) { o.gen_precision = v; });
  t.add("--json", "FILE", "also write the figures to FILE as JSON", "",
        [&o](const std::string& v) { o.json = v; });
  parse_options(t, argc, argv, kUsage);
  return o;
}

struct StepFigures {
  int micro_batch = 0, shards = 0, timed_steps = 0, attempts_after_first = 0;
  double median_ms = 0, min_ms = 0, p90_ms = 0;
  double tokens_per_s = 0, gflops = 0;
  double fold_share = 0;     // sum of fold time / sum of step time over the timed steps
  double compute_share = 0;  // forward + backward (incl. sampler fill)
  double apply_ms = 0;       // median TrainState::apply
  double first_loss = 0, last_loss = 0;
  std::shared_ptr<const AlignedVector<float>> weights;  // after the last step
};

// Decoding weights in bf16 against float on the same tokens (the float text): the largest logit
// difference, the logits' spread, and how often the most likely token differs. The cache starts
// afresh every context tokens (no re-encoding: enough for a comparison).
void compare_decoding(const ModelConfig& m, const float* w, const std::vector<int32_t>& text) {
  const DecodeWeights f32(m, w, false), b16(m, w, true);
  Decoder<float> a(m), b(m);
  double worst = 0, spread = 0;
  int differ = 0;
  int32_t tok = m.vocab > 10 ? 10 : 0;
  for (int32_t next : text) {
    if (a.position() == m.context) a.reset(), b.reset();
    const float* x = a.step(w, f32, tok);
    const float* y = b.step(w, b16, tok);
    const auto ax = std::max_element(x, x + m.vocab) - x, ay = std::max_element(y, y + m.vocab) - y;
    differ += ax != ay;
    spread = std::max(spread, double(x[ax] - *std::min_element(x, x + m.vocab)));
    for (int v = 0; v < m.vocab; ++v) worst = std::max(worst, double(std::abs(x[v] - y[v])));
    tok = next;
  }
  fmt::print(
      "bf16 vs fp32 decoding weights over {} tokens: logits max abs diff {:.4f} (largest logit "
      "spread {:.2f}), most likely token differs at {} tokens\n",
      text.size(), worst, spread, differ);
}

RunConfig step_config(const ModelConfig& model, const Options& o, int micro_batch) {
  RunConfig cfg;
  cfg.model = model;
  cfg.batch.batch = o.batch, cfg.batch.micro_batch = micro_batch, cfg.batch.context = o.context;
  cfg.precision = parse_precision(o.precision);
  const int total = o.warmup + o.repeats * o.steps;
  cfg.steps = total;
  cfg.validate();
  return cfg;
}

// The timed loop refreshes one StepWork in place instead of calling next_work() (which returns
// a new vector each time): same step, same grid, no allocation. Checked against next_work().
void refresh_work(StepWork& work, const TrainState& state, int32_t attempt, int shards) {
  work.step = state.step();
  work.attempt = attempt;
  work.shards = shards;
  work.grad_scale_exp = state.grad_scale_exp();  // same size: copy-assignment reuses the buffer
}

struct StepTimes {
  double fold = 0, compute = 0, apply = 0;  // ms
};

// One step: every shard, then apply(), another attempt while the grid must widen (counted in
// `attempts_after_first`).
StepOutcome run_step(TrainState& state, ShardWorker& worker, ExactGrad& acc, StepWork& work,
                     StepTimes& t, int& attempts_after_first) {
  const int shards = work.shards;
  for (int32_t attempt = 0;; ++attempt, ++attempts_after_first) {
    refresh_work(work, state, attempt, shards);
    acc.reset(state.layout());
    {
      // Hold the weights only while the shards run: apply() copies a buffer that someone else
      // still holds (copy-on-write), which a real backend avoids the same way.
      const auto w = state.weights();
      for (int k = 0; k < shards; ++k) {
        worker.compute(w->data(), work, k, acc);
        t.fold += worker.last_fold_ms(), t.compute += worker.last_compute_ms();
      }
    }
    const auto ta = Clock::now();
    const StepOutcome out = state.apply(acc, work);
    t.apply += ms_between(ta, Clock::now());
    if (out.kind == StepOutcome::next_attempt) continue;
    if (out.kind == StepOutcome::nonfinite)
      throw std::runtime_error(fmt::format("step {}: non-finite loss or gradient", out.step));
    return out;
  }
}

StepFigures measure_steps(const ModelConfig& model, const Options& o, int micro_batch,
                          const std::vector<int32_t>& stream, double flops_per_token) {
  const RunConfig cfg = step_config(model, o, micro_batch);
  const int total = cfg.steps;
  WindowSampler sampler(stream, o.context, sampler_seed(cfg.seed));
  TrainState state(cfg);
  ShardWorker worker(cfg, sampler);
  ExactGrad acc(state.layout());
  const int shards = cfg.batch.shards();

  StepWork work = state.next_work();
  refresh_work(work, state, 0, shards);
  {
    const StepWork ref = state.next_work();
    if (ref.step != work.step || ref.shards != work.shards ||
        ref.grad_scale_exp != work.grad_scale_exp || ref.attempt != work.attempt)
      throw std::logic_error("bench's StepWork refresh disagrees with next_work()");
  }

  StepFigures f;
  f.micro_batch = micro_batch, f.shards = shards;
  std::vector<double> step_ms, apply_ms;
  step_ms.reserve(size_t(total)), apply_ms.reserve(size_t(total));
  double fold_sum = 0, compute_sum = 0, step_sum = 0;
  for (int s = 0; s < total; ++s) {
    StepTimes t;
    const auto t0 = Clock::now();
    const StepOutcome out = run_step(state, worker, acc, work, t, f.attempts_after_first);
    const double ms = ms_between(t0, Clock::now());
    if (s == 0) f.first_loss = out.loss;
    f.last_loss = out.loss;
    if (s < o.warmup) continue;
    step_ms.push_back(ms), apply_ms.push_back(t.apply);
    fold_sum += t.fold, compute_sum += t.compute, step_sum += ms;
  }
  f.timed_steps = int(step_ms.size());
  f.median_ms = median(step_ms);
  f.min_ms = *std::min_element(step_ms.begin(), step_ms.end());
  f.p90_ms = quantile(step_ms, 0.9);
  f.tokens_per_s = double(cfg.batch.tokens_per_step()) / (f.median_ms / 1e3);
  f.gflops = flops_per_token * f.tokens_per_s / 1e9;
  f.fold_share = fold_sum / step_sum;
  f.compute_share = compute_sum / step_sum;
  f.apply_ms = median(apply_ms);
  f.weights = state.weights();
  return f;
}

// Floating-point work per token: 6 N_matmul (forward and backward) + the attention scores.
struct Flops {
  double n_matmul = 0, per_token = 0;
};
Flops flops_of(const ModelConfig& model, int context) {
  const double L = model.layers, d = model.d_model, V = model.vocab, T = context;
  Flops f;
  f.n_matmul = L * 12 * d * d + V * d;
  f.per_token = 6 * f.n_matmul + 12 * L * T * d;
  return f;
}

void print_setup(const ModelConfig& model, const Options& o, const ParamLayout& layout,
                 const Flops& flops, size_t stream_size) {
  fmt::print(
      "cllm-bench-step: one thread, synthetic stream of {} pseudo-random bytes (seed {:#x})\n",
      stream_size, kStreamSeed);
  fmt::print("model {}: {}; {} parameters ({} in matmuls); precision {}\n", o.model,
             model.describe(), layout.num_parameters(), int64_t(flops.n_matmul), o.precision);
  fmt::print(
      "step = every shard's ShardWorker::compute (fill, forward, backward, exact fold) + "
      "TrainState::apply (normalise, clip, AdamW)\n");
  fmt::print(
      "FLOP/token = 6*N_matmul + 12*L*T*d = 6*{} + 12*{}*{}*{} = {:.0f} (fwd+bwd; N_matmul = "
      "12*L*d^2 + V*d)\n",
      int64_t(flops.n_matmul), model.layers, o.context, model.d_model, flops.per_token);
  fmt::print(
      "timing: {} warm-up steps, then {} x {} timed steps per micro-batch; median over all "
      "timed steps\n\n",
      o.warmup, o.repeats, o.steps);
}

// Generation with the KV cache from `weights`: the median time of 3 runs, in ms.
double measure_generation(const ModelConfig& model, const Options& o, const float* weights) {
  SamplingOptions so;
  so.bf16_weights = parse_precision(o.gen_precision) == Precision::bf16;
  std::vector<double> times;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = Clock::now();
    const auto toks = generate(model, weights, {}, o.gen_tokens, so);
    times.push_back(ms_between(t0, Clock::now()));
    if (int(toks.size()) != o.gen_tokens) throw std::logic_error("generate() returned too few");
  }
  const double gen_ms = median(times);
  // The decoder's KV cache: keys and values of every layer for `context` positions, in float
  // whatever the decoding weights (src/model.cpp, Decoder::Impl).
  const double cache_bytes = 2.0 * model.layers * model.d_model * model.context * sizeof(float);
  fmt::print("KV cache: 2*L*d*context floats = 2*{}*{}*{}*4 bytes = {:.1f} MiB\n", model.layers,
             model.d_model, model.context, cache_bytes / (1 << 20));
  fmt::print(
      "generation: {} tokens from an empty prompt (KV cache, sliding window at context {}, "
      "T {} top-k {} top-p {}, {} weights), median of 3: {:.2f} ms, {:.0f} tokens/s\n",
      o.gen_tokens, model.context, so.temperature, so.top_k, so.top_p, o.gen_precision, gen_ms,
      o.gen_tokens / (gen_ms / 1e3));
  if (so.bf16_weights) {
    SamplingOptions fo = so;
    fo.bf16_weights = false;
    compare_decoding(model, weights, generate(model, weights, {}, o.gen_tokens, fo));
  }
  return gen_ms;
}

void write_step_json(const Options& o, const ModelConfig& model, const ParamLayout& layout,
                     const Flops& flops, const std::vector<StepFigures>& figs, double gen_ms,
                     double gen_tps, double peak) {
  nlohmann::json j;
  j["model"] = o.model;
  j["model_config"] = model.describe();
  j["params"] = layout.num_parameters();
  j["matmul_params"] = int64_t(flops.n_matmul);
  j["batch"] = o.batch, j["context"] = o.context;
  j["flops_per_token"] = flops.per_token;
  j["flops_formula"] = "6*N_matmul + 12*L*T*d, N_matmul = 12*L*d^2 + V*d";
  j["threads"] = 1;
  j["warmup"] = o.warmup, j["steps"] = o.steps, j["repeats"] = o.repeats;
  j["runs"] = nlohmann::json::array();
  for (const auto& f : figs)
    j["runs"].push_back({{"micro_batch", f.micro_batch},
                         {"shards", f.shards},
                         {"timed_steps", f.timed_steps},
                         {"step_ms_median", f.median_ms},
                         {"step_ms_min", f.min_ms},
                         {"step_ms_p90", f.p90_ms},
                         {"tokens_per_s", f.tokens_per_s},
                         {"gflops", f.gflops},
                         {"fold_share", f.fold_share},
                         {"compute_share", f.compute_share},
                         {"apply_ms_median", f.apply_ms},
                         {"attempts_after_first", f.attempts_after_first},
                         {"first_loss", f.first_loss},
                         {"last_loss", f.last_loss}});
  j["gen_tokens"] = o.gen_tokens;
  j["gen_ms_median"] = gen_ms;
  j["gen_tokens_per_s"] = gen_tps;
  j["gen_precision"] = o.gen_precision;
  j["train_tokens_per_s"] = figs.front().tokens_per_s;
  j["fma_peak_gflops"] = peak;
  write_json(o.json, j);
}

// The preset with --d-model/--layers/--heads applied; its context grows to --context (the GPT-2
// body is `--model small --d-model 768 --layers 12 --heads 12 --context 1024`: byte vocabulary).
ModelConfig bench_model(const Options& o) {
  ModelConfig m = model_preset(o.model);
  if (o.d_model > 0) m.d_model = o.d_model;
  if (o.layers > 0) m.layers = o.layers;
  if (o.heads > 0) m.n_heads = o.heads;
  m.context = std::max(m.context, o.context);
  m.validate();
  return m;
}

int run(const Options& o) {
  const ModelConfig model = bench_model(o);
  {
    BatchConfig b;
    b.batch = o.batch, b.micro_batch = o.micro_batch, b.context = o.context;
    b.validate(model);
  }
  const ParamLayout layout(model);
  const Flops flops = flops_of(model, o.context);
  const std::vector<int32_t> stream = synthetic_stream(model.vocab);
  print_setup(model, o, layout, flops, stream.size());

  std::vector<int> micros = {o.micro_batch};
  const int cm = o.compare_micro;
  if (cm > 0 && cm != o.micro_batch && o.batch % cm == 0) micros.push_back(cm);

  fmt::print("{:<10} {:>5} {:>6} {:>9} {:>9} {:>9} {:>10} {:>8} {:>7} {:>8} {:>9} {:>5}\n", "batch",
             "micro", "shards", "med ms", "min ms", "p90 ms", "tokens/s", "GFLOP/s", "fold %",
             "fwd+bwd%", "apply ms", "att>0");
  std::vector<StepFigures> figs;
  for (int mb : micros) {
    figs.push_back(measure_steps(model, o, mb, stream, flops.per_token));
    const auto& f = figs.back();
    fmt::print(
        "{:<10} {:>5} {:>6} {:>9.2f} {:>9.2f} {:>9.2f} {:>10.0f} {:>8.1f} {:>7.2f} {:>8.1f} "
        "{:>9.2f} {:>5}\n",
        fmt::format("{}x{}", o.batch, o.context), f.micro_batch, f.shards, f.median_ms, f.min_ms,
        f.p90_ms, f.tokens_per_s, f.gflops, 100 * f.fold_share, 100 * f.compute_share, f.apply_ms,
        f.attempts_after_first);
  }
  const StepFigures& main_fig = figs.front();
  fmt::print("loss (micro-batch {}): {:.4f} at the first step, {:.4f} at the last\n",
             main_fig.micro_batch, main_fig.first_loss, main_fig.last_loss);

  // The weights fingerprint that metrics.jsonl carries after every step (run/observers.cpp):
  // its cost against this step.
  {
    // Fewer repeats at GPT-2 sizes, where 200 passes over the weights outlast the timed steps.
    const bool large = layout.num_parameters() > 10'000'000;
    const int fp_repeats = large ? 5 : 200, sha_repeats = large ? 2 : 20;
    std::vector<double> fp_ms;
    uint64_t sink = 0;
    for (int i = 0; i < fp_repeats; ++i) {
      const auto t0 = Clock::now();
      sink ^= step_fingerprint(layout, main_fig.weights->data()).weights;
      fp_ms.push_back(ms_between(t0, Clock::now()));
    }
    std::vector<double> sha_ms;
    for (int i = 0; i < sha_repeats; ++i) {
      const auto t0 = Clock::now();
      sink ^= uint64_t(weights_sha256(layout, main_fig.weights->data())[0]);
      sha_ms.push_back(ms_between(t0, Clock::now()));
    }
    const double fp = median(fp_ms);
    fmt::print(
        "weights fingerprint ({} floats, {} tensors): {:.3f} ms median of {}, {:.3f}% of this "
        "one-thread step ({:.2f} ms); weights_sha256 {:.3f} ms [{:x}]\n",
        layout.num_parameters(), layout.tensors().size(), fp, fp_repeats,
        100 * fp / main_fig.median_ms, main_fig.median_ms, median(sha_ms), sink & 0xf);
  }
  // Generation from the weights after the default run's last step.
  double gen_ms = 0, gen_tps = 0;
  if (o.gen_tokens > 0) {
    gen_ms = measure_generation(model, o, main_fig.weights->data());
    gen_tps = o.gen_tokens / (gen_ms / 1e3);
  }
  // The ceiling: no step runs faster than the core's multiply-add peak (measured after the steps,
  // so the clock has settled the same way for both).
  const double peak = gemm::fma_peak_gflops();
  fmt::print(
      "fp32 FMA peak of this core {:.1f} GFLOP/s: the step (micro-batch {}) reaches {:.1f}%\n",
      peak, main_fig.micro_batch, 100 * main_fig.gflops / peak);
  if (!o.json.empty()) write_step_json(o, model, layout, flops, figs, gen_ms, gen_tps, peak);
  fmt::print("train_tokens_per_s={:.1f} gen_tokens_per_s={:.1f} fma_peak_gflops={:.1f}\n",
             main_fig.tokens_per_s, gen_tps, peak);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return bench_main("cllm-bench-step", [&] { return run(parse(argc, argv)); });
}
