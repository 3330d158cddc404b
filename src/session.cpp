#include "src/session.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <ostream>

#include <fmt/format.h>

#include "src/checkpoint.hpp"
#include "src/evaluate.hpp"
#include "src/sha256.hpp"

namespace cllm {

namespace fs = std::filesystem;

namespace {
std::atomic<bool> g_stop{false};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = int64_t(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, size_t(std::ceil(p * double(v.size())) - 1));
  return v[i];
}

void write_json(const fs::path& p, const nlohmann::json& j) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream f(tmp);
    f << j.dump(2) << "\n";
    if (!f) throw std::runtime_error(fmt::format("cannot write '{}'", tmp.string()));
  }
  fs::rename(tmp, p);
}

Checkpoint make_checkpoint(const TrainState& st, const Tokenizer& tok) {
  Checkpoint ck;
  ck.model = st.config().model;
  ck.tokenizer_kind = tok.kind();
  ck.tokenizer_data = tok.serialize();
  ck.step = uint64_t(st.step());
  ck.seed = st.config().seed;
  ck.run = st.config().to_json();
  ck.weights.assign(st.weights()->begin(), st.weights()->end());
  ck.adam_m = st.adam().m;
  ck.adam_v = st.adam().v;
  ck.grad_scale_exp = st.exponents();
  return ck;
}
}  // namespace

void request_stop() { g_stop.store(true); }
bool stop_requested() { return g_stop.load(); }

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;
}

SessionResult run_session(const RunConfig& cfg, const Corpus& corpus, const Tokenizer& tok,
                          Backend& backend, const SessionOptions& opt, std::ostream& out) {
  SessionResult res;
  const fs::path dir(opt.run_dir);
  const fs::path ckdir = dir / "checkpoints";
  fs::create_directories(ckdir);

  TrainState state(cfg);
  {
    nlohmann::json conf = cfg.to_json();
    conf["backend"] = backend.name();
    conf["workers"] = backend.workers();
    conf["extra"] = opt.extra_config;
    conf["corpus_files"] = corpus.files.size();
    conf["train_tokens"] = corpus.train.size();
    conf["val_tokens"] = corpus.val.size();
    write_json(dir / "config.json", conf);
  }
  std::ofstream metrics(dir / "metrics.jsonl", std::ios::trunc);

  const bool tty = opt.progress >= 0 ? opt.progress == 1 : ::isatty(STDOUT_FILENO) == 1;
  const int64_t log_every =
      opt.log_every > 0 ? opt.log_every : std::max<int64_t>(1, cfg.steps / 20);
  std::unique_ptr<Evaluator> evaluator;
  if (corpus.val.size() > size_t(cfg.batch.context))
    evaluator = std::make_unique<Evaluator>(cfg.model, corpus.val, cfg.batch.context,
                                            opt.eval_windows, cfg.batch.micro_batch,
                                            tok.bytes_per_token_hint());

  std::vector<double> step_ms, tok_s;
  double last_val = -1, last_bpb = -1;
  int64_t redo_steps = 0;
  const double t_start = now_s();
  const int64_t first_step = state.step();
  StepOutcome last{};

  while (state.step() < cfg.steps) {
    if (stop_requested()) {
      res.stop_reason = "interrupted";
      break;
    }
    const double t0 = now_s();
    StepOutcome o;
    for (;;) {
      const StepWork work = state.next_work();
      const ExactGrad total = backend.run_step(work, state.weights());
      o = state.apply(total, work);
      if (o.kind != StepOutcome::redo) break;
      ++redo_steps;
    }
    if (o.kind == StepOutcome::nonfinite) {
      res.stop_reason = fmt::format(
          "step {}: the loss or gradient is not finite (NaN/Inf); the update was refused and the "
          "weights are those after step {}",
          o.step, o.step);
      res.exit_code = 3;
      break;
    }
    last = o;
    const double ms = (now_s() - t0) * 1e3;
    const double tps = double(o.tokens) / (ms / 1e3);
    step_ms.push_back(ms);
    tok_s.push_back(tps);
    const int64_t done = state.step();
    nlohmann::json row = {{"step", done},       {"loss", o.loss}, {"lr", o.lr},
                          {"grad_norm", o.grad_norm}, {"tokens_per_s", tps}, {"step_ms", ms}};
    const StepTiming tm = backend.last_timing();
    row["compute_ms"] = tm.compute_ms;
    row["reduce_ms"] = tm.reduce_ms + tm.fold_ms;
    const bool eval_now = evaluator && ((opt.eval_every > 0 && done % opt.eval_every == 0) ||
                                        done == cfg.steps);
    if (eval_now) {
      const EvalResult ev = evaluator->run(state.weights()->data());
      last_val = ev.loss, last_bpb = ev.bits_per_byte;
      row["val_loss"] = ev.loss;
      row["val_bpb"] = ev.bits_per_byte;
    }
    metrics << row.dump() << "\n";
    metrics.flush();

    const double elapsed = now_s() - t_start;
    const double eta = elapsed / double(done - first_step) * double(cfg.steps - done);
    const std::string line = fmt::format(
        "step {}/{} | loss {:.4f} | val {} | {:.0f} tok/s | ETA {}", done, cfg.steps, o.loss,
        last_val >= 0 ? fmt::format("{:.4f}", last_val) : std::string("-"), tps,
        format_duration(eta));
    if (tty) {
      out << "\r" << line << "\033[K" << std::flush;
    } else if (done % log_every == 0 || done == cfg.steps || done == first_step + 1) {
      out << line << "\n" << std::flush;
    }
  }
  if (tty) out << "\n";

  // Final state: checkpoint, statistics, summary.
  res.steps_done = state.step();
  res.final_loss = last.loss;
  res.weights_sha256 = weights_sha256(state.layout(), state.weights()->data());
  const std::string ck_path = (ckdir / checkpoint_name(uint64_t(state.step()))).string();
  save_checkpoint(ck_path, make_checkpoint(state, tok));
  if (evaluator && last_val < 0 && state.step() > 0) {
    const EvalResult ev = evaluator->run(state.weights()->data());
    last_val = ev.loss, last_bpb = ev.bits_per_byte;
  }
  res.val_loss = last_val, res.val_bpb = last_bpb;

  // Median over steps after warm-up (the first steps pay for first-touch allocation).
  const size_t skip = std::min<size_t>(step_ms.size() / 10 + (step_ms.size() > 2 ? 1 : 0), 5);
  std::vector<double> ms_w(step_ms.begin() + std::min(skip, step_ms.size()), step_ms.end());
  std::vector<double> tps_w(tok_s.begin() + std::min(skip, tok_s.size()), tok_s.end());
  res.step_ms_median = median(ms_w);
  res.tokens_per_s = median(tps_w);

  write_json(dir / "spheres.json", backend.worker_stats());
  nlohmann::json summary = {{"steps", res.steps_done},
                            {"backend", backend.name()},
                            {"spheres", backend.workers()},
                            {"tokens_per_s", res.tokens_per_s},
                            {"step_ms_median", res.step_ms_median},
                            {"step_ms_p95", percentile(ms_w, 0.95)},
                            {"peak_rss_mb", peak_rss_mb()},
                            {"final_loss", res.final_loss},
                            {"val_loss", last_val >= 0 ? nlohmann::json(last_val) : nlohmann::json()},
                            {"val_bpb", last_bpb >= 0 ? nlohmann::json(last_bpb) : nlohmann::json()},
                            {"weights_sha256", res.weights_sha256},
                            {"redo_steps", redo_steps},
                            {"wall_s", now_s() - t_start},
                            {"checkpoint", ck_path},
                            {"stop_reason", res.stop_reason}};
  for (auto& [k, v] : backend.fault_counters().items()) summary[k] = v;
  write_json(dir / "summary.json", summary);

  if (opt.sample_tokens > 0 && res.exit_code == 0) {
    const auto prompt = tok.encode(opt.sample_prompt);
    const auto gen = generate(cfg.model, state.weights()->data(), prompt, opt.sample_tokens,
                              opt.sampling);
    const std::string text = opt.sample_prompt + tok.decode(gen);
    std::ofstream(dir / "sample.txt") << text << "\n";
    out << "--- sample (" << opt.sample_tokens << " tokens, temperature "
        << opt.sampling.temperature << ") ---\n"
        << text << "\n---\n";
  }
  return res;
}

}  // namespace cllm
