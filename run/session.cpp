#include "run/session.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <ostream>

#include <fmt/format.h>

#include "run/observers.hpp"
#include "run/sysinfo.hpp"
#include "src/clock.hpp"
#include "src/evaluate.hpp"
#include "src/generate.hpp"
#include "src/safe_text.hpp"
#include "src/sha256.hpp"
#include "src/stats.hpp"

namespace cllm {

namespace {

// summary.json keeps 0 (not null) for a figure with no samples, as its readers expect.
double or_zero(double x) {
  return std::isfinite(x) ? x : 0;
}

// Steps after warm-up (the first steps pay for first-touch allocation).
std::vector<double> after_warmup(const std::vector<double>& v) {
  const size_t skip = std::min<size_t>(v.size() / 10 + (v.size() > 2 ? 1 : 0), 5);
  return std::vector<double>(v.begin() + std::min(skip, v.size()), v.end());
}

// `settings`: the run's settings now (settings_json), to tell a corpus edited in place.
void restore(TrainState& state, const Checkpoint& ck, const Tokenizer& tok,
             const nlohmann::json& settings, std::ostream& err) {
  require_compatible(ck, state.config().model, tok.kind());
  const RunConfig saved = RunConfig::from_json(ck.run);
  const auto diff = saved.differences(state.config());
  // Only the data differs and the corpus has the name it had: its text changed in place.
  const nlohmann::json saved_corpus = ck.run.is_object() && ck.run.contains("settings")
                                          ? ck.run["settings"].value("corpus", nlohmann::json())
                                          : nlohmann::json();
  if (diff.size() == 1 && diff.front() == "data_sha256" && !saved_corpus.is_null() &&
      saved_corpus == settings["corpus"])
    throw CheckpointError(fmt::format(
        "--resume: the corpus {} changed since checkpoint '{}' was written (its tokens hash to "
        "{} now, {} then); restore its text to continue this run",
        settings["corpus"].dump(), ck.source_path, state.config().data_sha256.substr(0, 16),
        saved.data_sha256.substr(0, 16)));
  if (!diff.empty()) {
    std::string list;
    const auto a = saved.to_json(), b = state.config().to_json();
    for (const auto& k : diff)
      list += fmt::format("{}{} {} (checkpoint) vs {} (now)", list.empty() ? "" : ", ", k,
                          a[k].dump(), b[k].dump());
    throw CheckpointError(fmt::format(
        "--resume: checkpoint '{}' was made with other settings: {}; leave them out to use the "
        "run's own",
        ck.source_path, list));
  }
  if (ck.weights.size() != state.layout().total())
    throw CheckpointError(fmt::format("checkpoint '{}' has the wrong size", ck.source_path));
  state.restore(int64_t(ck.step), ck.weights.data(), ck.adam_m.data(), ck.adam_v.data(),
                ck.grad_scale_exp);
  err << fmt::format("resuming from {} (step {})\n", ck.source_path, ck.step);
}

// --resume of a run that already reached its last step: report it, change nothing.
SessionResult already_complete(const Session& s, const TrainState& state) {
  SessionResult res;
  res.steps_done = state.step();
  res.weights_sha256 = weights_sha256(state.layout(), state.weights()->data());
  const nlohmann::json summary = s.folder.read_json("summary.json");
  res.final_loss = summary.value("final_loss", 0.0);
  if (summary.contains("val_loss") && summary["val_loss"].is_number())
    res.val_loss = summary["val_loss"];
  res.tokens_per_s = summary.value("tokens_per_s", 0.0);
  s.out << fmt::format("the run in '{}' is already complete ({} steps); nothing to do\n",
                       s.folder.dir(), state.step());
  return res;
}

nlohmann::json config_json(const Session& s, const nlohmann::json& settings) {
  return {{"settings", settings},
          {"run", s.run.to_json()},
          {"tokenizer", tokenizer_record(s.tok.kind(), s.tok.serialize())},
          {"backend", s.backend.name()},
          {"spheres", s.backend.spheres()},
          {"corpus_files", s.corpus.files.size()},
          {"train_tokens", s.corpus.train.size()},
          {"val_tokens", s.corpus.val.size()}};
}

// Writes one file of the run; a failure is reported and never replaces a good file.
bool write_run_file(const Session& s, const std::string& name, const std::string& text) {
  try {
    s.folder.write(name, text);
    return true;
  } catch (const std::exception& e) {
    s.err << "cllm: " << e.what() << "\n";
    return false;
  }
}

struct Ending {
  const LoopResult& loop;
  const EventLog& events;
  std::string checkpoint;
  double wall_s;
};

nlohmann::json summary_json(const Session& s, const SessionResult& res, const Ending& end) {
  const auto ms = after_warmup(end.loop.step_ms);
  nlohmann::json j = {
      {"steps", res.steps_done},
      {"backend", s.backend.name()},
      {"spheres", s.backend.spheres()},
      {"tokens_per_s", res.tokens_per_s},
      {"step_ms_median", res.step_ms_median},
      {"step_ms_p95", or_zero(quantile(ms, 0.95))},
      {"peak_rss_mb", peak_rss_mb()},
      {"final_loss", res.final_loss},
      {"val_loss", res.val_loss >= 0 ? nlohmann::json(res.val_loss) : nlohmann::json()},
      {"val_bpb", res.val_bpb >= 0 ? nlohmann::json(res.val_bpb) : nlohmann::json()},
      {"weights_sha256", res.weights_sha256},
      {"attempts_after_first", end.loop.attempts_after_first},  // was "redo_steps"
      {"wall_s", end.wall_s},
      {"checkpoint", path_to_json(end.checkpoint)},
      {"stop_reason", printable(res.stop_reason)},  // may quote a path: any bytes
      {"restarts", end.events.totals().restarts},
      {"deadline_kills", end.events.totals().deadline_kills},
      {"subtree_restarts", end.events.totals().subtree_restarts},
      {"fault_reasons", end.events.reasons()},
      {"nodes_joined", end.events.totals().nodes_joined},
      {"nodes_left", end.events.totals().nodes_left},
      {"nodes_lost", end.events.totals().nodes_lost},
      {"shards_redispatched", end.events.totals().shards_redispatched},
      {"bytes_sent", end.events.bytes_sent()},
      {"bytes_received", end.events.bytes_received()},
      {"network_ms_median", or_zero(median(end.events.network_ms()))}};
  return j;
}

// Final evaluation (when the last step had none), the sample, the figures.
SessionResult finish_figures(const Session& s, const TrainState& state, Evaluator* evaluator,
                             const LoopResult& loop) {
  SessionResult res;
  res.steps_done = state.step();
  res.exit_code = loop.exit_code;
  res.stop_reason = loop.stop_reason;
  res.weights_sha256 = weights_sha256(state.layout(), state.weights()->data());
  if (loop.last) {
    res.final_loss = loop.last->loss;
    if (loop.last->eval)
      res.val_loss = loop.last->eval->loss, res.val_bpb = loop.last->eval->bits_per_byte;
  }
  if (evaluator && res.val_loss < 0 && state.step() > 0) {
    try {
      const EvalResult ev = evaluator->run(state.weights()->data());
      res.val_loss = ev.loss, res.val_bpb = ev.bits_per_byte;
    } catch (const std::exception& e) {
      s.err << "cllm: the final evaluation failed: " << e.what() << "\n";
    }
  }
  res.step_ms_median = or_zero(median(after_warmup(loop.step_ms)));
  res.tokens_per_s = or_zero(median(after_warmup(loop.tokens_per_s)));
  return res;
}

bool write_sample(const Session& s, const TrainState& state) {
  const TrainSettings& cfg = s.settings;
  if (cfg.sample_tokens <= 0) return true;
  try {
    const auto gen = generate(s.run.model, state.weights()->data(), s.tok.encode(cfg.prompt),
                              cfg.sample_tokens, cfg.sampling);
    const std::string text = cfg.prompt + s.tok.decode(gen);
    s.out << "--- sample (" << cfg.sample_tokens << " tokens, temperature "
          << cfg.sampling.temperature << ") ---\n"
          << text << "\n---\n";
    return write_run_file(s, "sample.txt", text + "\n");
  } catch (const std::exception& e) {
    s.err << "cllm: the sample failed: " << e.what() << "\n";
    return false;
  }
}

std::unique_ptr<Evaluator> make_evaluator(const Session& s) {
  if (s.corpus.val.size() <= size_t(s.run.batch.context)) return nullptr;
  return std::make_unique<Evaluator>(s.run.model, s.corpus.val, s.run.batch.context,
                                     s.settings.eval_windows, s.run.batch.micro_batch, s.tok);
}

bool progress_in_place(const TrainSettings& cfg) {
  if (cfg.progress == "auto") return ::isatty(STDOUT_FILENO) == 1;
  return cfg.progress == "line";
}

}  // namespace

SessionResult run_session(const Session& s, const std::optional<Checkpoint>& resume_from) {
  const double t_start = seconds_now();
  TrainState state(s.run);
  const nlohmann::json settings = settings_json(s.settings);
  if (resume_from) {
    restore(state, *resume_from, s.tok, settings, s.err);
    if (state.step() >= s.run.steps) return already_complete(s, state);
  } else if (s.init_weights) {
    if (s.init_weights->size() != state.layout().total())
      throw ConfigError("the starting weights do not fit the run's model");
    const AlignedVector<float> zeros(s.init_weights->size(), 0.0f);
    state.restore(0, s.init_weights->data(), zeros.data(), zeros.data(), {});
  }
  s.folder.write("config.json", config_json(s, settings).dump(2) + "\n");
  auto evaluator = make_evaluator(s);

  MetricsLog metrics(s.folder.open_metrics(state.step()), state.step(), s.settings.checkpoint_every,
                     WeightsSource{&state.layout(), [&state] { return state.weights()->data(); },
                                   s.settings.fingerprint_every});
  SpheresSnapshot spheres(s.folder, s.backend);
  EventLog events(s.err);
  CheckpointSnapshots snapshots;
  CheckpointCadence checkpoints(
      s.folder, s.sink, [&] { return snapshots.take(state, s.tok, settings); },
      s.settings.checkpoint_every, s.settings.keep, s.err);
  if (resume_from) checkpoints.set_newest_good(resume_from->source_path);
  LoopResult loop;
  {
    ProgressLine progress(
        s.out, progress_in_place(s.settings),
        s.settings.log_every > 0 ? s.settings.log_every : std::max<int64_t>(1, s.run.steps / 20),
        state.step());
    TrainingLoop training(state, s.backend, evaluator.get(), s.settings.eval_every, s.stop);
    loop = training.run({&metrics, &events, &checkpoints, &spheres, &progress});
  }
  events.add(loop.failed_step_faults);

  // Whatever stopped the loop, the last applied step is saved and reported.
  checkpoints.finish(state.step());
  SessionResult res = finish_figures(s, state, evaluator.get(), loop);
  bool written = !checkpoints.failed();
  written &=
      write_run_file(s, "spheres.json", spheres_json(s.backend.sphere_stats()).dump(2) + "\n");
  const Ending end{loop, events, checkpoints.newest_good(), seconds_now() - t_start};
  written &= write_run_file(s, "summary.json", summary_json(s, res, end).dump(2) + "\n");
  if (res.exit_code == 0) written &= write_sample(s, state);
  if (!written && res.exit_code == 0) res.exit_code = 5;
  return res;
}

}  // namespace cllm
