// cllm-bench-sync: the same training steps on every synchronisation backend, side by side.
//
// Backends: the actor tree with fan-out 2, fan-out 12 and flat (fan-out >= spheres: every sphere
// a child of sphere 0), the mutex pool and the barrier pool (src/pool_backends.hpp). For each
// model and each worker count, every backend gets a fresh TrainState and a fresh backend, runs
// --warmup untimed steps and then --steps timed steps of a fixed global batch on a synthetic
// token stream (pseudo-random bytes from a fixed seed; no corpus needed).
//
// Like for like: `workers` is the number of spheres (actors) or pool threads, AND the number of
// OS threads doing the work: the CAF scheduler gets exactly `workers` threads, the pools start
// `workers` std::threads. In every backend the calling thread waits for the step's sums, then
// the optimizer runs per slice on the backend's owners (pool threads or owner actors).
//
// Step time = run_step (including any attempt > 0, with wider exponents) + TrainState::apply;
// tokens/s = tokens per step / median step time. Shares are of worker time = workers x run_step
// wall time, summed over the timed steps: compute (forward + backward, incl. the sampler), fold
// (shard gradient -> exact sum), reduce (merging partial sums; for the mutex pool also the
// per-shard scratch reset and waiting for the lock; for the barrier pool the whole reduction
// phase), wait = the rest (idle: waiting for work, for the slowest worker, for messages or
// barriers).
//
// Every run of a model (every backend, every worker count) must end with the same weights as
// the plain reference loop, bit for bit; a mismatch is reported and the exit status is 1.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "actors/tree_backend.hpp"
#include "bench/bench_util.hpp"
#include "run/observers.hpp"
#include "run/run_folder.hpp"
#include "run/sysinfo.hpp"
#include "src/clock.hpp"
#include "src/config.hpp"
#include "src/pool_backends.hpp"
#include "src/sampler.hpp"
#include "src/sha256.hpp"
#include "src/training.hpp"

using namespace cllm;
using namespace cllm::bench;

namespace {

struct Options {
  std::vector<std::string> models = {"small"};
  std::vector<int> workers;  // empty = 1, 2 and the detected cores
  int batch = 16;
  int micro_batch = 2;
  int context = 128;
  int steps = 8;
  int warmup = 2;
  std::vector<std::string> backends = {"actors-f2", "actors-f12", "actors-flat", "mutex",
                                       "barrier"};
  std::string csv, json;
  std::string runs_dir;  // a run folder per backend and worker count, for `cllm report`
};

const char* kUsage =
    "usage: cllm-bench-sync [options]\n"
    "Runs the same training steps on the actor tree (fan-out 2, 12, flat; actors-fN for any N)\n"
    "and on the mutex and barrier thread pools for each worker count (workers = spheres or pool\n"
    "threads = OS threads), prints one table per model and checks that every run ends with the\n"
    "reference loop's weights.\n";

// "actors-f2" -> 2, "actors-flat" -> 0 (fan-out >= spheres), a pool -> -1; throws ConfigError
// or cli::UsageError.
int backend_fanout(const std::string& b) {
  if (b == "mutex" || b == "barrier") return -1;
  if (b == "actors-flat") return 0;
  if (b.rfind("actors-f", 0) == 0) {
    const int f = int(cli::to_int("--backends", b.substr(8), -kIntLimit, kIntLimit));
    if (f < 1) throw ConfigError(fmt::format("backend {}: the fan-out must be >= 1", b));
    return f;
  }
  throw ConfigError(fmt::format(
      "unknown backend '{}' (known: actors-f2, actors-f12, actors-flat, actors-fN, mutex, "
      "barrier)",
      b));
}

Options parse(int argc, char** argv) {
  Options o;
  cli::OptionTable t;
  t.add("--models,--model", "M[,M...]", "model presets (tiny, small, base)", "small",
        [&o](const std::string& v) { o.models = split_list(v); });
  t.add("--workers", "N[,N...]", "worker counts (spheres or pool threads)", "1,2[,cores]",
        [&o](const std::string& v) {
          o.workers.clear();
          for (const auto& w : split_list(v))
            o.workers.push_back(int(cli::to_int("--workers", w, 1, kIntLimit)));
          if (o.workers.empty()) throw cli::UsageError("option --workers needs at least one count");
        });
  add_int(t, "--batch", "sequences per step", o.batch);
  add_int(t, "--micro-batch", "sequences per shard", o.micro_batch);
  add_int(t, "--context", "tokens per sequence (at most the model's)", o.context);
  add_int(t, "--steps", "timed steps", o.steps, 1);
  add_int(t, "--warmup", "untimed steps first", o.warmup, 0);
  t.add("--backends", "B[,B...]", "actors-fN (fan-out N), actors-flat, mutex, barrier",
        fmt::format("{}", fmt::join(o.backends, ",")),
        [&o](const std::string& v) { o.backends = split_list(v); });
  t.add("--csv", "FILE", "also write the results to FILE as CSV", "",
        [&o](const std::string& v) { o.csv = v; });
  t.add("--json", "FILE", "also write the results to FILE as JSON", "",
        [&o](const std::string& v) { o.json = v; });
  t.add("--runs-dir", "DIR",
        "also write a run folder per model, backend and worker count into DIR (metrics.jsonl "
        "with each timed step's time split and weights fingerprint): cllm report DIR/* "
        "--group-by backend --out F compares them",
        "", [&o](const std::string& v) { o.runs_dir = v; });
  parse_options(t, argc, argv, kUsage);
  if (o.models.empty()) throw ConfigError("--models needs at least one model");
  if (o.backends.empty()) throw ConfigError("--backends needs at least one backend");
  for (const auto& b : o.backends) backend_fanout(b);
  if (o.workers.empty()) {
    o.workers = {1, 2};
    if (detected_cores() > 2) o.workers.push_back(detected_cores());
  }
  // Deduplicate, keeping the order given.
  std::vector<int> uniq;
  for (int w : o.workers)
    if (std::find(uniq.begin(), uniq.end(), w) == uniq.end()) uniq.push_back(w);
  o.workers = uniq;
  return o;
}

struct Result {
  std::string model, backend;
  int workers = 0, threads = 0, fanout = 0, levels = 0;
  int timed_steps = 0, attempts_after_first = 0;
  double median_ms = 0, p95_ms = 0, tokens_per_s = 0;
  double opt_ms = 0, merge_ms = 0;  // medians per step: optimizer on the loop's side, merges
  double compute_share = 0, fold_share = 0, reduce_share = 0, wait_share = 0;
  double speedup = 0, vs_best = 0;
  std::string sha;
};

std::unique_ptr<Backend> make_backend(const std::string& name, const RunConfig& cfg,
                                      const WindowSampler& sampler, int workers, Result& r) {
  const int f = backend_fanout(name);
  r.threads = workers;
  if (f < 0) return make_pool_backend(name, cfg, sampler, workers);
  TreeOptions opt;
  opt.spheres = workers;
  opt.fanout = f == 0 ? std::max(1, workers) : f;
  opt.threads = workers;  // like for like: as many scheduler threads as pool threads
  auto tree = std::make_unique<TreeBackend>(cfg, sampler, opt);
  r.fanout = opt.fanout;
  r.levels = Topology(opt.spheres, opt.fanout).levels();
  return tree;
}

// A run folder of one benchmark run, as `cllm train` writes one (run/observers.hpp's MetricsLog
// writes the rows), so that the compare page and `cllm diff` read it.
struct RunFolderOut {
  std::optional<RunFolder> folder;
  std::optional<MetricsLog> metrics;
  double started = 0;

  RunFolderOut(const std::string& runs_dir, const std::string& model_name, const RunConfig& cfg,
               const std::string& backend_name, int workers, int warmup, const TrainState& st) {
    if (runs_dir.empty()) return;
    std::filesystem::create_directories(runs_dir);
    folder.emplace(RunFolder::create(
        fmt::format("{}/{}-{}-w{}", runs_dir, model_name, backend_name, workers), true));
    const nlohmann::json settings = {{"model", model_name},
                                     {"backend", backend_name},
                                     {"spheres", workers},
                                     {"threads", workers},
                                     {"batch", cfg.batch.batch},
                                     {"micro-batch", cfg.batch.micro_batch},
                                     {"context", cfg.batch.context},
                                     {"steps", cfg.steps},
                                     {"warmup-steps-untimed", warmup},
                                     {"corpus", "synthetic stream (cllm-bench-sync)"}};
    folder->write("config.json", nlohmann::json({{"settings", settings},
                                                 {"run", cfg.to_json()},
                                                 {"backend", backend_name},
                                                 {"spheres", workers}})
                                         .dump(2) +
                                     "\n");
    WeightsSource ws{&st.layout(), [&st] { return st.weights()->data(); }, 1};
    metrics.emplace(folder->open_metrics(0), 0, 0, ws);
    started = seconds_now();
  }
  void step(const StepRecord& r) {
    if (metrics) metrics->on_step(r);
  }
  void finish(const Result& r, const TrainState& st, double last_loss) {
    if (!folder) return;
    folder->write("summary.json", nlohmann::json({{"steps", st.step()},
                                                  {"backend", r.backend},
                                                  {"spheres", r.workers},
                                                  {"tokens_per_s", r.tokens_per_s},
                                                  {"step_ms_median", r.median_ms},
                                                  {"step_ms_p95", r.p95_ms},
                                                  {"final_loss", last_loss},
                                                  {"weights_sha256", r.sha},
                                                  {"restarts", 0},
                                                  {"nodes_lost", 0},
                                                  {"wall_s", seconds_now() - started},
                                                  {"stop_reason", ""}})
                                          .dump(2) +
                                      "\n");
  }
};

Result run_one(const std::string& model_name, const RunConfig& cfg, const WindowSampler& sampler,
               const std::string& backend_name, int workers, int warmup,
               const std::string& runs_dir) {
  Result r;
  r.model = model_name, r.backend = backend_name, r.workers = workers;
  TrainState st(cfg);
  auto backend = make_backend(backend_name, cfg, sampler, workers, r);
  RunFolderOut out(runs_dir, model_name, cfg, backend_name, workers, warmup, st);
  StepOutcome last{};
  std::vector<double> step_ms, opt_ms, merge_ms;
  double wall = 0, compute = 0, fold = 0, reduce = 0;
  for (int64_t s = 0; s < cfg.steps; ++s) {
    const bool timed = s >= warmup;
    double s_wall = 0, s_compute = 0, s_fold = 0, s_reduce = 0;
    const auto t0 = Clock::now();
    for (;;) {
      const StepWork w = st.next_work();
      const auto tb = Clock::now();
      const StepSums& total = backend->run_step(w, st.weights());
      s_wall += ms_between(tb, Clock::now());
      const StepTiming tm = backend->last_timing();
      s_compute += tm.compute_ms, s_fold += tm.fold_ms, s_reduce += tm.reduce_ms;
      const StepOutcome o = st.apply(total, w, backend->slice_runner());
      if (o.kind == StepOutcome::next_attempt) {
        if (timed) ++r.attempts_after_first;
        continue;
      }
      if (o.kind == StepOutcome::nonfinite)
        throw std::runtime_error(fmt::format("{} with {} workers: step {} is not finite",
                                             backend_name, workers, o.step));
      last = o;
      break;
    }
    const double ms = ms_between(t0, Clock::now());
    {
      // The row of every step (warm-up ones too: the weights fingerprints need every step).
      StepRecord rec;
      rec.step = st.step(), rec.last_step = cfg.steps, rec.loss = last.loss;
      rec.lr = last.lr, rec.grad_norm = last.grad_norm;
      rec.tokens = cfg.batch.tokens_per_step();
      rec.step_ms = ms, rec.tokens_per_s = double(rec.tokens) / (ms / 1e3);
      rec.timing.compute_ms = s_compute, rec.timing.fold_ms = s_fold;
      rec.timing.reduce_ms = s_reduce, rec.timing.spheres = workers;
      rec.timing.wait_ms = std::max(0.0, workers * s_wall - s_compute - s_fold - s_reduce);
      out.step(rec);
    }
    if (!timed) continue;
    step_ms.push_back(ms);
    opt_ms.push_back(ms - s_wall);
    merge_ms.push_back(s_reduce);
    wall += s_wall, compute += s_compute, fold += s_fold, reduce += s_reduce;
  }
  r.timed_steps = int(step_ms.size());
  r.median_ms = median(step_ms);
  r.opt_ms = median(opt_ms);
  r.merge_ms = median(merge_ms);
  r.p95_ms = quantile(step_ms, 0.95);
  r.tokens_per_s = double(cfg.batch.tokens_per_step()) / (r.median_ms / 1e3);
  const double worker_time = double(workers) * wall;
  r.compute_share = compute / worker_time;
  r.fold_share = fold / worker_time;
  r.reduce_share = reduce / worker_time;
  r.wait_share = 1.0 - r.compute_share - r.fold_share - r.reduce_share;
  r.sha = weights_sha256(st.layout(), st.weights()->data());
  out.finish(r, st, last.loss);
  return r;
}

std::string pct(double x) {
  return fmt::format("{:.1f}", 100 * x);
}

void print_table(const std::vector<Result>& rs) {
  fmt::print("{:<12} {:>7} {:>10} {:>9} {:>9} {:>8} {:>6} {:>8} {:>6} {:>8} {:>7} {:>5}\n",
             "backend", "workers", "tokens/s", "med ms", "p95 ms", "compute%", "fold%", "reduce%",
             "wait%", "speed-up", "vs best", "att>0");
  for (const auto& r : rs)
    fmt::print(
        "{:<12} {:>7} {:>10.0f} {:>9.2f} {:>9.2f} {:>8} {:>6} {:>8} {:>6} {:>8} {:>7.2f} {:>5}\n",
        r.backend, r.workers, r.tokens_per_s, r.median_ms, r.p95_ms, pct(r.compute_share),
        pct(r.fold_share), pct(r.reduce_share), pct(r.wait_share),
        r.speedup > 0 ? fmt::format("{:.2f}x", r.speedup) : std::string("-"), r.vs_best,
        r.attempts_after_first);
  fmt::print(
      "medians per step: the optimizer (the time after run_step returned) and the merges "
      "(reduce time summed over workers)\n");
  for (const auto& r : rs)
    fmt::print("{:<12} {:>7} optimizer {:>7.3f} ms  merge {:>7.3f} ms  step {:>8.2f} ms\n",
               r.backend, r.workers, r.opt_ms, r.merge_ms, r.median_ms);
}

void print_preamble(const Options& o, int cores) {
  fmt::print(
      "cllm-bench-sync: {} detected cores; synthetic stream of {} pseudo-random bytes (seed "
      "{:#x})\n",
      cores, kStreamTokens, kStreamSeed);
  fmt::print(
      "workers = spheres (actors) or pool threads; every backend runs on exactly `workers` OS "
      "threads (CAF scheduler threads = pool threads = workers)\n");
  fmt::print(
      "step = run_step (every attempt) + optimizer; {} warm-up steps, then {} timed steps; med/p95 "
      "over "
      "the timed steps (nearest rank)\n",
      o.warmup, o.steps);
  fmt::print(
      "shares of worker time (workers x run_step wall): compute = fwd+bwd, fold = exact fold, "
      "reduce = merging partial sums (+ lock / reduction phase), wait = the rest\n");
}

RunConfig sync_config(const std::string& model_name, const Options& o) {
  RunConfig cfg;
  cfg.model = model_preset(model_name);
  const int context = std::min(o.context, cfg.model.context);
  cfg.batch.batch = o.batch, cfg.batch.micro_batch = o.micro_batch;
  cfg.batch.context = context;
  cfg.steps = o.warmup + o.steps;
  cfg.validate();
  return cfg;
}

// Speed-up over the smallest worker count of the same backend; ratio to the best backend at the
// same worker count.
void add_ratios(std::vector<Result>& rs, int base_w) {
  for (auto& r : rs) {
    double base = 0, best = 0;
    for (const auto& q : rs) {
      if (q.backend == r.backend && q.workers == base_w) base = q.tokens_per_s;
      if (q.workers == r.workers) best = std::max(best, q.tokens_per_s);
    }
    r.speedup = base > 0 ? r.tokens_per_s / base : 0;
    r.vs_best = best > 0 ? r.tokens_per_s / best : 0;
  }
}

// Every backend at every worker count on one model, each checked against the reference loop's
// weights; `matched` is false when one of them differs.
std::vector<Result> bench_model(const std::string& model_name, const Options& o, bool& matched) {
  const RunConfig cfg = sync_config(model_name, o);
  const int context = cfg.batch.context;
  const std::vector<int32_t> stream = synthetic_stream(cfg.model.vocab);
  WindowSampler sampler(stream, context, sampler_seed(cfg.seed));

  fmt::print("\nmodel {}: {}; {} parameters; batch {} x {} tokens, micro-batch {} ({} shards)\n",
             model_name, cfg.model.describe(), ParamLayout(cfg.model).num_parameters(),
             cfg.batch.batch, context, cfg.batch.micro_batch, cfg.batch.shards());
  if (context != o.context)
    fmt::print("(--context {} exceeds the model's context: using {})\n", o.context, context);

  std::string ref_sha;
  {
    TrainState ref(cfg);
    train_reference(ref, sampler, cfg.steps);
    ref_sha = weights_sha256(ref.layout(), ref.weights()->data());
  }

  std::vector<Result> rs;
  for (int w : o.workers)
    for (const auto& b : o.backends) {
      rs.push_back(run_one(model_name, cfg, sampler, b, w, o.warmup, o.runs_dir));
      std::fflush(stdout);
    }
  const int base_w = *std::min_element(o.workers.begin(), o.workers.end());
  add_ratios(rs, base_w);
  if (base_w != 1) fmt::print("(speed-up is over {} workers of the same backend)\n", base_w);
  print_table(rs);

  int bad = 0;
  for (const auto& r : rs)
    if (r.sha != ref_sha) {
      ++bad;
      fmt::print("MISMATCH: {} with {} workers ended with weights {} (reference loop: {})\n",
                 r.backend, r.workers, r.sha, ref_sha);
    }
  if (bad == 0)
    fmt::print("weights sha256 after {} steps: {} (reference loop and all {} runs agree)\n",
               cfg.steps, ref_sha, rs.size());
  matched = bad == 0;
  return rs;
}

void write_csv(const Options& o, const std::vector<Result>& all) {
  std::string csv =
      "model,backend,workers,threads,fanout,levels,timed_steps,attempts_after_first,tokens_per_s,"
      "step_ms_median,step_ms_p95,compute_share,fold_share,reduce_share,wait_share,speedup,"
      "vs_best,weights_sha256\n";
  for (const auto& r : all)
    csv += fmt::format(
        "{},{},{},{},{},{},{},{},{:.1f},{:.3f},{:.3f},{:.4f},{:.4f},{:.4f},{:.4f},"
        "{:.3f},{:.3f},{}\n",
        r.model, r.backend, r.workers, r.threads, r.fanout, r.levels, r.timed_steps,
        r.attempts_after_first, r.tokens_per_s, r.median_ms, r.p95_ms, r.compute_share,
        r.fold_share, r.reduce_share, r.wait_share, r.speedup, r.vs_best, r.sha);
  write_text(o.csv, csv);
}

void write_results_json(const Options& o, const std::vector<Result>& all, int cores,
                        bool mismatch) {
  nlohmann::json j;
  j["cores"] = cores;
  j["batch"] = o.batch, j["micro_batch"] = o.micro_batch, j["context"] = o.context;
  j["steps"] = o.steps, j["warmup"] = o.warmup;
  j["workers"] = o.workers;
  j["backends"] = o.backends;
  j["weights_match"] = !mismatch;
  j["results"] = nlohmann::json::array();
  for (const auto& r : all)
    j["results"].push_back({{"model", r.model},
                            {"backend", r.backend},
                            {"workers", r.workers},
                            {"threads", r.threads},
                            {"fanout", r.fanout},
                            {"levels", r.levels},
                            {"timed_steps", r.timed_steps},
                            {"attempts_after_first", r.attempts_after_first},
                            {"tokens_per_s", r.tokens_per_s},
                            {"step_ms_median", r.median_ms},
                            {"step_ms_p95", r.p95_ms},
                            {"compute_share", r.compute_share},
                            {"fold_share", r.fold_share},
                            {"reduce_share", r.reduce_share},
                            {"wait_share", r.wait_share},
                            {"speedup", r.speedup},
                            {"vs_best", r.vs_best},
                            {"weights_sha256", r.sha}});
  write_json(o.json, j);
}

int run(const Options& o) {
  const int cores = detected_cores();
  print_preamble(o, cores);
  std::vector<Result> all;
  bool mismatch = false;
  for (const auto& model_name : o.models) {
    bool matched = true;
    const std::vector<Result> rs = bench_model(model_name, o, matched);
    if (!matched) mismatch = true;
    all.insert(all.end(), rs.begin(), rs.end());
  }
  if (!o.csv.empty()) write_csv(o, all);
  if (!o.json.empty()) write_results_json(o, all, cores, mismatch);
  if (mismatch) {
    fmt::print(stderr, "cllm-bench-sync: the backends did not produce the same weights\n");
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return bench_main("cllm-bench-sync", [&] { return run(parse(argc, argv)); });
}
