#include "src/session.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <utility>

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
// Restores `state` from the newest checkpoint in `ckdir` that verifies; a corrupt, truncated or
// unreadable newer one is reported and skipped. Throws CheckpointError when none is usable or
// the run's settings differ.
void resume_from_newest(TrainState& state, const Tokenizer& tok, const fs::path& ckdir,
                        std::ostream& out) {
  auto all = list_checkpoints(ckdir.string());
  if (all.empty())
    throw CheckpointError(fmt::format("--resume: no checkpoint in '{}'", ckdir.string()));
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    Checkpoint ck;
    try {
      ck = load_checkpoint(*it);
    } catch (const CheckpointError& e) {
      // Left in place, untouched: it may be unreadable for a passing reason (permissions, I/O,
      // a newer format), and a later checkpoint of this run will replace it by name.
      out << "cllm: " << e.what()
          << (std::next(it) != all.rend() ? "; using the previous checkpoint\n"
                                          : "; no older checkpoint\n");
      continue;
    }
    require_compatible(ck, state.config().model, tok.kind());
    const RunConfig saved = RunConfig::from_json(ck.run);
    const auto diff = saved.differences(state.config());
    if (!diff.empty()) {
      std::string list;
      const auto a = saved.to_json(), b = state.config().to_json();
      for (const auto& k : diff)
        list += fmt::format("{}{} {} (checkpoint) vs {} (now)", list.empty() ? "" : ", ", k,
                            a[k].dump(), b[k].dump());
      throw CheckpointError(
          fmt::format("--resume: checkpoint '{}' was made with other settings: {}; leave them out "
                      "to use the run's own",
                      *it, list));
    }
    const ParamLayout& L = state.layout();
    if (ck.weights.size() != L.total())
      throw CheckpointError(fmt::format("checkpoint '{}' has the wrong size", *it));
    state.restore(int64_t(ck.step), ck.weights.data(), ck.adam_m.data(), ck.adam_v.data(),
                  ck.grad_scale_exp);
    out << fmt::format("resuming from {} (step {})\n", *it, ck.step);
    return;
  }
  throw CheckpointError(
      fmt::format("--resume: no usable checkpoint in '{}' (see above)", ckdir.string()));
}

// A new run gets a fresh folder (one holding checkpoints of another run is refused, so that
// nothing safe is ever pruned); a resumed run needs its checkpoints folder. Stale temporaries of
// a killed checkpoint write are removed. Throws ConfigError / CheckpointError.
// An exclusive lock on the run folder for the life of the session: two processes writing one
// run folder would interleave metrics and prune each other's checkpoints.
class RunFolderLock {
 public:
  explicit RunFolderLock(const fs::path& dir) {
    const std::string path = (dir / ".lock").string();
    fd_ = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw ConfigError(fmt::format("cannot create '{}': {}", path, std::strerror(errno)));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      throw ConfigError(
          fmt::format("run folder '{}' is in use by another cllm process", dir.string()));
    }
  }
  ~RunFolderLock() { ::close(fd_); }
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;

 private:
  int fd_ = -1;
};

void prepare_run_folder(const fs::path& dir, const fs::path& ckdir, bool resume) {
  std::error_code ec;
  if (resume) {
    if (!fs::is_directory(ckdir, ec))
      throw CheckpointError(fmt::format(
          "--resume: '{}' holds no checkpoints folder; nothing to resume", dir.string()));
  } else if (!list_checkpoints(ckdir.string()).empty()) {
    throw ConfigError(fmt::format(
        "run folder '{}' already holds the checkpoints of a run; continue it with --resume or "
        "choose another --run-dir",
        dir.string()));
  }
  fs::create_directories(ckdir, ec);
  if (ec || !fs::is_directory(ckdir))
    throw ConfigError(fmt::format("cannot create the run folder '{}': {}", ckdir.string(),
                                  ec ? ec.message() : "not a folder"));
  for (fs::directory_iterator it(ckdir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("ckpt-", 0) == 0 && name.find(".safetensors.tmp.") != std::string::npos) {
      std::error_code rm;
      fs::remove(it->path(), rm);
    }
  }
}

// --resume of a run that already reached its last step: report it, change nothing.
SessionResult already_complete(const TrainState& state, const fs::path& dir, std::ostream& out) {
  SessionResult res;
  res.steps_done = state.step();
  res.weights_sha256 = weights_sha256(state.layout(), state.weights()->data());
  try {
    std::ifstream in(dir / "summary.json");
    const auto s = nlohmann::json::parse(in);
    res.final_loss = s.value("final_loss", 0.0);
    if (s.contains("val_loss") && s["val_loss"].is_number()) res.val_loss = s["val_loss"];
    res.tokens_per_s = s.value("tokens_per_s", 0.0);
  } catch (const std::exception&) {
    // no summary (the run was killed after its last checkpoint): the figures stay empty
  }
  out << fmt::format("the run in '{}' is already complete ({} steps); nothing to do\n",
                     dir.string(), state.step());
  return res;
}

// metrics.jsonl keeps the rows of steps already done (a resumed run continues the file).
std::ofstream open_metrics(const fs::path& p, int64_t done) {
  std::vector<std::string> keep;
  if (done > 0) {
    std::ifstream in(p);
    std::string line;
    while (std::getline(in, line)) {
      try {
        if (nlohmann::json::parse(line).value("step", int64_t(0)) <= done) keep.push_back(line);
      } catch (const nlohmann::json::exception&) {
        // a torn last line of a killed run
      }
    }
  }
  if (done > 0) {  // rewrite through a temporary so that a kill never loses the history
    const fs::path tmp = p.string() + ".tmp";
    {
      std::ofstream t(tmp, std::ios::trunc);
      for (const auto& l : keep) t << l << "\n";
      if (!t.flush()) throw ConfigError(fmt::format("cannot write '{}'", tmp.string()));
    }
    fs::rename(tmp, p);
    return std::ofstream(p, std::ios::app);
  }
  return std::ofstream(p, std::ios::trunc);
}
}  // namespace

void write_checkpoint_and_prune(const Checkpoint& ck, const std::string& path, int keep) {
  save_checkpoint(path, ck);
  // Only now that the new checkpoint is complete may older ones go.
  const auto all = list_checkpoints(fs::path(path).parent_path().string());
  for (size_t i = 0; i + size_t(std::max(keep, 1)) < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i], ec);
  }
}

void SyncCheckpointSink::submit(std::shared_ptr<const Checkpoint> snapshot, const std::string& path,
                                int keep) {
  try {
    write_checkpoint_and_prune(*snapshot, path, keep);
  } catch (const std::exception& e) {
    errors_.push_back(e.what());
  }
}

std::vector<std::string> SyncCheckpointSink::flush() {
  return std::exchange(errors_, {});
}

void request_stop() {
  g_stop.store(true);
}
bool stop_requested() {
  return g_stop.load();
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;
}

SessionResult run_session(const RunConfig& cfg, const Corpus& corpus, const Tokenizer& tok,
                          Backend& backend, const SessionOptions& opt, std::ostream& out,
                          std::ostream& err, CheckpointSink* sink) {
  SessionResult res;
  const fs::path dir(opt.run_dir);
  const fs::path ckdir = dir / "checkpoints";
  if (opt.resume && !fs::is_directory(dir))
    throw CheckpointError(fmt::format("--resume: there is no run folder '{}'", dir.string()));
  {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec)
      throw ConfigError(
          fmt::format("cannot create the run folder '{}': {}", dir.string(), ec.message()));
  }
  const RunFolderLock lock(dir);
  prepare_run_folder(dir, ckdir, opt.resume);

  TrainState state(cfg);
  SyncCheckpointSink sync_sink;
  if (!sink) sink = &sync_sink;
  if (opt.resume) {
    resume_from_newest(state, tok, ckdir, err);
    if (state.step() >= cfg.steps) return already_complete(state, dir, out);
  }
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
  std::ofstream metrics = open_metrics(dir / "metrics.jsonl", state.step());

  const bool tty = opt.progress >= 0 ? opt.progress == 1 : ::isatty(STDOUT_FILENO) == 1;
  const int64_t log_every =
      opt.log_every > 0 ? opt.log_every : std::max<int64_t>(1, cfg.steps / 20);
  std::unique_ptr<Evaluator> evaluator;
  if (corpus.val.size() > size_t(cfg.batch.context))
    evaluator =
        std::make_unique<Evaluator>(cfg.model, corpus.val, cfg.batch.context, opt.eval_windows,
                                    cfg.batch.micro_batch, tok.bytes_per_token_hint());

  std::vector<double> step_ms, tok_s;
  double last_val = -1, last_bpb = -1;
  int64_t redo_steps = 0;
  const double t_start = now_s();
  const int64_t first_step = state.step();
  StepOutcome last{};
  bool checkpoint_failed = false;
  // For the run page (run/): fault counts per step are the changes of the backend's totals, and
  // spheres.json is rewritten during the run at most every second and never for more than ~1%
  // of the time (its cost is measured each time).
  nlohmann::json faults_before = backend.fault_counters();
  double spheres_written_at = now_s(), spheres_interval_s = 1.0;

  while (state.step() < cfg.steps) {
    if (stop_requested()) {
      res.stop_reason =
          fmt::format("interrupted after step {}; resume with --resume", state.step());
      res.exit_code = 130;
      break;
    }
    const double t0 = now_s();
    StepOutcome o;
    try {
      for (int attempt = 0;; ++attempt) {
        // A redo always fits (its grid comes from exact maxima); a second one would be a bug.
        if (attempt > 2)
          throw std::logic_error(
              fmt::format("step {}: the exact-sum grid did not settle after "
                          "{} attempts",
                          state.step() + 1, attempt));
        const StepWork work = state.next_work();
        const ExactGrad total = backend.run_step(work, state.weights());
        o = state.apply(total, work);
        if (o.kind != StepOutcome::redo) break;
        ++redo_steps;
      }
    } catch (const BackendFailure& e) {
      // The step was not applied: the state is the consistent result of the last step.
      res.stop_reason = e.what();
      res.exit_code = 4;
      break;
    } catch (const std::exception& e) {
      // Whatever failed, the last applied step is intact: save it below, then report.
      res.stop_reason = fmt::format("step {} failed: {}", state.step() + 1, e.what());
      res.exit_code = 1;
      break;
    }
    if (o.kind == StepOutcome::nonfinite) {
      res.stop_reason = fmt::format(
          "step {}: the loss or gradient is not finite (NaN/Inf) or out of range; the update was "
          "refused and the weights are those after step {}",
          o.step + 1, o.step);
      res.exit_code = 3;
      break;
    }
    last = o;
    const double ms = (now_s() - t0) * 1e3;
    const double tps = double(o.tokens) / (ms / 1e3);
    step_ms.push_back(ms);
    tok_s.push_back(tps);
    const int64_t done = state.step();
    nlohmann::json row = {{"step", done},        {"loss", o.loss},
                          {"lr", o.lr},          {"grad_norm", o.grad_norm},
                          {"tokens_per_s", tps}, {"step_ms", ms}};
    const StepTiming tm = backend.last_timing();
    row["compute_ms"] = tm.compute_ms;
    row["fold_ms"] = tm.fold_ms;
    row["reduce_ms"] = tm.reduce_ms;
    row["workers"] = tm.workers;
    const nlohmann::json faults_now = backend.fault_counters();
    for (auto it = faults_now.begin(); it != faults_now.end(); ++it)
      if (it->is_number_integer() && it.value() != faults_before.value(it.key(), it.value()))
        row[it.key()] = it->get<int64_t>() - faults_before[it.key()].get<int64_t>();
    faults_before = faults_now;
    if (opt.resume && done == first_step + 1) row["resumed_from"] = first_step;
    const bool checkpoint_now =
        opt.checkpoint_every > 0 && done % opt.checkpoint_every == 0 && done < cfg.steps;
    if (checkpoint_now) row["checkpoint"] = checkpoint_name(uint64_t(done));
    const bool eval_now =
        evaluator && ((opt.eval_every > 0 && done % opt.eval_every == 0) || done == cfg.steps);
    if (eval_now) {
      const EvalResult ev = evaluator->run(state.weights()->data());
      last_val = ev.loss, last_bpb = ev.bits_per_byte;
      row["val_loss"] = ev.loss;
      row["val_bpb"] = ev.bits_per_byte;
    }
    metrics << row.dump() << "\n";
    metrics.flush();
    if (const double t = now_s(); t - spheres_written_at >= spheres_interval_s) {
      try {
        write_json(dir / "spheres.json", backend.worker_stats());
      } catch (const std::exception&) {
        // a live snapshot only: the final one below reports its errors
      }
      spheres_written_at = now_s();
      spheres_interval_s = std::max(1.0, 100 * (spheres_written_at - t));
    }
    if (checkpoint_now)
      sink->submit(std::make_shared<const Checkpoint>(make_checkpoint(state, tok)),
                   (ckdir / checkpoint_name(uint64_t(done))).string(), opt.keep);
    for (const auto& e : sink->poll()) {  // say so now, not at the end of a long run
      err << "cllm: checkpoint error: " << e << "\n";
      checkpoint_failed = true;
    }

    const double elapsed = now_s() - t_start;
    const double eta = elapsed / double(done - first_step) * double(cfg.steps - done);
    const std::string line =
        fmt::format("step {}/{} | loss {:.4f} | val {} | {:.0f} tok/s | ETA {}", done, cfg.steps,
                    o.loss, last_val >= 0 ? fmt::format("{:.4f}", last_val) : std::string("-"), tps,
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
  sink->submit(std::make_shared<const Checkpoint>(make_checkpoint(state, tok)), ck_path, opt.keep);
  for (const auto& e : sink->flush()) {
    err << "cllm: checkpoint error: " << e << "\n";
    checkpoint_failed = true;
  }
  if (checkpoint_failed && res.exit_code == 0) res.exit_code = 5;
  // The summary names the newest checkpoint that is really on disk.
  const auto on_disk = list_checkpoints(ckdir.string());
  const std::string newest_ckpt = on_disk.empty() ? std::string() : on_disk.back();
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
  nlohmann::json summary = {
      {"steps", res.steps_done},
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
      {"checkpoint", newest_ckpt},
      {"stop_reason", res.stop_reason}};
  const nlohmann::json faults = backend.fault_counters();
  for (auto it = faults.begin(); it != faults.end(); ++it) summary[it.key()] = it.value();
  write_json(dir / "summary.json", summary);

  if (opt.sample_tokens > 0 && res.exit_code == 0) {
    const auto prompt = tok.encode(opt.sample_prompt);
    const auto gen =
        generate(cfg.model, state.weights()->data(), prompt, opt.sample_tokens, opt.sampling);
    const std::string text = opt.sample_prompt + tok.decode(gen);
    std::ofstream(dir / "sample.txt") << text << "\n";
    out << "--- sample (" << opt.sample_tokens << " tokens, temperature "
        << opt.sampling.temperature << ") ---\n"
        << text << "\n---\n";
  }
  return res;
}

}  // namespace cllm
