// cllm: train a small GPT on your text with a tree of actor spheres, and sample from it.
// Thin wiring only: options -> corpus -> backend -> the shared session loop.
#include <malloc.h>

#include <unistd.h>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <fmt/format.h>

#include "actors/checkpoint_writer.hpp"
#include "actors/pool_backends.hpp"
#include "actors/tree_backend.hpp"
#include "apps/options.hpp"
#include "src/checkpoint.hpp"
#include "src/corpus.hpp"
#include "src/generate.hpp"
#include "src/safetensors.hpp"
#include "src/session.hpp"
#include "src/sha256.hpp"
#include "src/tokenizer.hpp"

#ifndef CLLM_DEFAULT_CORPUS
#define CLLM_DEFAULT_CORPUS "data/kjv.txt"
#endif

using namespace cllm;
using cli::OptionTable;
using cli::to_double;
using cli::to_int;
using cli::UsageError;

namespace {

int cores() {
  return int(std::max(1u, std::thread::hardware_concurrency()));
}

std::string default_corpus() {
  if (const char* env = std::getenv("CLLM_DEFAULT_CORPUS")) return env;
  return CLLM_DEFAULT_CORPUS;
}

// A new runs/<date-time> folder, created here (atomically: two runs started in the same second
// get different folders).
std::string new_run_dir() {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  std::filesystem::create_directories("runs");
  for (int i = 1;; ++i) {
    const std::string dir =
        std::string("runs/") + stamp + (i > 1 ? "-" + std::to_string(i) : std::string());
    if (std::filesystem::create_directory(dir)) return dir;
  }
}

volatile std::sig_atomic_t g_signals = 0;
void on_signal(int sig) {
  if (++g_signals > 1) _exit(128 + sig);  // a second signal: leave at once
  request_stop();
}

struct TrainArgs {
  RunConfig run;
  std::string preset = "small";
  int d_model = 0, layers = 0, heads = 0, context = 0;
  double epochs = 0;
  bool steps_set = false, min_lr_set = false;
  std::string corpus;
  double val_fraction = 0.1;
  std::string sync = "actors";
  TreeOptions tree;
  SessionOptions session;
  bool print_topology = false;
  bool help = false;
};

OptionTable train_options(TrainArgs& a) {
  OptionTable t;
  auto i64 = [](int64_t& dst, long long lo, long long hi, const char* n) {
    return [&dst, lo, hi, n](const std::string& v) { dst = to_int(n, v, lo, hi); };
  };
  auto i32 = [](int& dst, long long lo, long long hi, const char* n) {
    return [&dst, lo, hi, n](const std::string& v) { dst = int(to_int(n, v, lo, hi)); };
  };
  auto f64 = [](double& dst, const char* n) {
    return [&dst, n](const std::string& v) { dst = to_double(n, v); };
  };
  auto& r = a.run;
  t.section("Data");
  t.add("--corpus", "PATH", "text file or folder (read recursively)",
        "the King James Bible, " + default_corpus(), [&](auto& v) { a.corpus = v; });
  t.add("--val-fraction", "F", "tail of the corpus held out for validation", "0.1",
        f64(a.val_fraction, "--val-fraction"));
  t.section("Model");
  t.add("--model", "NAME",
        "preset: tiny (d 64, 2 layers), small (d 128, 4 layers), base (d 256, 6 layers)", "small",
        [&](auto& v) { a.preset = v; });
  t.add("--d-model,--embed-dim", "N", "embedding width (overrides the preset)", "",
        i32(a.d_model, 1, 8192, "--d-model"));
  t.add("--layers,--num-layers", "N", "transformer blocks", "", i32(a.layers, 1, 256, "--layers"));
  t.add("--heads,--num-heads", "N", "attention heads", "", i32(a.heads, 1, 1024, "--heads"));
  t.add("--context,--seq-len", "N", "tokens per sequence (and the model's context)", "the preset's",
        i32(a.context, 1, 65536, "--context"));
  t.section("Training");
  t.add("--steps", "N", "optimizer steps", "2000", [&](auto& v) {
    r.steps = to_int("--steps", v, 1, int64_t(1) << 40);
    a.steps_set = true;
  });
  t.add("--epochs", "E", "train for E passes over the training tokens (instead of --steps)", "",
        f64(a.epochs, "--epochs"));
  t.add("--batch,--batch-size", "N", "sequences per step (the global batch)", "16",
        i32(r.batch.batch, 1, 1 << 20, "--batch"));
  t.add("--micro-batch", "N", "sequences per shard; --batch must be a multiple", "2",
        i32(r.batch.micro_batch, 1, 1 << 20, "--micro-batch"));
  t.add("--lr,--learning-rate", "X", "peak learning rate", "1e-3", f64(r.optim.lr, "--lr"));
  t.add("--min-lr", "X", "floor of the cosine decay", "lr/10", [&](auto& v) {
    r.optim.min_lr = to_double("--min-lr", v);
    a.min_lr_set = true;
  });
  t.add("--warmup", "N", "linear warm-up steps", "100",
        i64(r.optim.warmup, 0, int64_t(1) << 40, "--warmup"));
  t.add("--weight-decay", "X", "AdamW decoupled weight decay (2-D weights)", "0.1",
        f64(r.optim.weight_decay, "--weight-decay"));
  t.add("--clip", "X", "global gradient-norm clip (0 = off)", "1.0", f64(r.optim.clip, "--clip"));
  t.add("--seed", "N", "seed of the initial weights and of the data order", "1337",
        [&](auto& v) { r.seed = uint64_t(to_int("--seed", v, 0, INT64_MAX)); });
  t.add("--precision", "P",
        "fp32, or bf16: linear layers in bfloat16 with float sums (CPUs with AVX512_BF16)", "fp32",
        [&](auto& v) { r.precision = parse_precision(v); });
  t.section("Spheres");
  t.add("--sync", "KIND", "actors (the sphere tree), mutex or barrier (thread-pool baselines)",
        "actors", [&](auto& v) { a.sync = v; });
  t.add("--spheres", "N", "spheres (workers); 1741 = root + 12 + 144 + 1584 with fan-out 12",
        std::to_string(cores()) + " (cores)", i32(a.tree.spheres, 1, 1000000, "--spheres"));
  t.add("--fanout", "N", "children per sphere", "12", i32(a.tree.fanout, 1, 1000000, "--fanout"));
  t.add("--threads", "N", "CAF scheduler threads", std::to_string(cores()) + " (cores)",
        i32(a.tree.threads, 1, 4096, "--threads"));
  t.add("--print-topology", "", "print the sphere tree and exit", "",
        [&](auto&) { a.print_topology = true; });
  t.section("Output");
  t.add("--run-dir,--checkpoint-dir", "DIR", "run folder: config, metrics, checkpoints, summary",
        "a new runs/<date-time>", [&](auto& v) { a.session.run_dir = v; });
  t.add("--eval-every", "N", "steps between validation evaluations (0 = at the end only)", "200",
        i32(a.session.eval_every, 0, INT32_MAX, "--eval-every"));
  t.add("--eval-windows", "N", "validation windows per evaluation (0 = all)", "32",
        i32(a.session.eval_windows, 0, INT32_MAX, "--eval-windows"));
  t.add("--log-every", "N", "progress lines every N steps when not on a terminal", "steps/20",
        i32(a.session.log_every, 0, INT32_MAX, "--log-every"));
  t.add("--progress", "MODE", "auto, line (update in place) or plain", "auto", [&](auto& v) {
    if (v == "auto")
      a.session.progress = -1;
    else if (v == "line")
      a.session.progress = 1;
    else if (v == "plain")
      a.session.progress = 0;
    else
      throw UsageError("option --progress expects auto, line or plain, got '" + v + "'");
  });
  t.add("--sample-tokens", "N", "tokens generated at the end (0 = none)", "200",
        i32(a.session.sample_tokens, 0, 1 << 20, "--sample-tokens"));
  t.add("--prompt", "TEXT", "prompt of the final sample", "\"\"",
        [&](auto& v) { a.session.sample_prompt = v; });
  t.add("--temperature", "T", "sampling temperature (0 = greedy)", "0.8",
        f64(a.session.sampling.temperature, "--temperature"));
  t.add("--top-k", "K", "sample among the K most likely tokens (0 = off)", "40",
        i32(a.session.sampling.top_k, 0, 1 << 20, "--top-k"));
  t.add("--top-p", "P", "nucleus sampling mass (1 = off)", "0.95",
        f64(a.session.sampling.top_p, "--top-p"));
  t.section("Checkpoints and faults");
  t.add("--checkpoint-every", "N", "steps between checkpoints (0 = final only)", "200",
        i64(a.session.checkpoint_every, 0, int64_t(1) << 40, "--checkpoint-every"));
  t.add("--keep", "K", "checkpoints kept", "3", i32(a.session.keep, 1, 1 << 20, "--keep"));
  t.add("--resume", "", "continue from the newest valid checkpoint in --run-dir", "",
        [&](auto&) { a.session.resume = true; });
  t.add(
      "--inject", "SPEC",
      "crash:sphere=K,step=S or hang:sphere=K,step=S: fault of sphere K in step S (counted from 1 "
      "as in the progress line); repeatable, each fires once",
      "", [&](auto& v) { a.tree.faults.injections.push_back(parse_injection(v)); });
  t.add("--chaos", "P", "each sphere crashes with probability P in each step", "0",
        f64(a.tree.faults.chaos_p, "--chaos"));
  t.add("--chaos-seed", "N", "seed of the chaos draws", "1", [&](auto& v) {
    a.tree.faults.chaos_seed = uint64_t(to_int("--chaos-seed", v, 0, INT64_MAX));
  });
  t.add("--max-restarts", "R", "restarts a sphere allows its children within --restart-window",
        "10", i32(a.tree.policy.max_restarts, 0, INT32_MAX, "--max-restarts"));
  t.add("--restart-window", "SECONDS", "window of --max-restarts", "10",
        f64(a.tree.policy.window_s, "--restart-window"));
  t.add("--root-max-restarts", "R", "restarts of sphere 0 allowed within --root-restart-window",
        "3", i32(a.tree.policy.root_max_restarts, 0, INT32_MAX, "--root-max-restarts"));
  t.add("--root-restart-window", "SECONDS", "window of --root-max-restarts", "60",
        f64(a.tree.policy.root_window_s, "--root-restart-window"));
  t.add("--deadline-factor", "X", "step deadline = X * median recent step time", "4",
        f64(a.tree.policy.deadline_factor, "--deadline-factor"));
  t.add("--deadline-floor", "SECONDS", "the step deadline is never shorter", "2",
        f64(a.tree.policy.deadline_floor_s, "--deadline-floor"));
  t.section("General");
  t.add("--config", "FILE", "read options from FILE (lines 'name = value'; the command line wins)",
        "", [](auto&) {});
  t.add("--help,-h", "", "show this help", "", [&](auto&) { a.help = true; });
  return t;
}

// With --resume, every setting that decides the numbers and was not given again comes from the
// run's config.json, so `cllm train --run-dir D --resume` just continues. Settings given again
// must match the checkpoint (checked by the session).
void inherit_settings(TrainArgs& a, const OptionTable& t) {
  std::ifstream in(std::filesystem::path(a.session.run_dir) / "config.json");
  if (!in) return;  // the session reports what is missing
  nlohmann::json c;
  try {
    c = nlohmann::json::parse(in);
    RunConfig& r = a.run;
    const auto& m = c.at("model");
    if (!t.given("--model") && !t.given("--d-model")) a.d_model = m.at("d_model");
    if (!t.given("--model") && !t.given("--layers")) a.layers = m.at("n_layers");
    if (!t.given("--model") && !t.given("--heads")) a.heads = m.at("n_heads");
    if (!t.given("--model") && !t.given("--context")) a.context = m.at("context");
    if (!t.given("--batch")) r.batch.batch = c.at("batch");
    if (!t.given("--micro-batch")) r.batch.micro_batch = c.at("micro_batch");
    if (!t.given("--lr")) r.optim.lr = c.at("lr");
    if (!t.given("--min-lr")) r.optim.min_lr = c.at("min_lr"), a.min_lr_set = true;
    if (!t.given("--warmup")) r.optim.warmup = c.at("warmup");
    if (!t.given("--weight-decay")) r.optim.weight_decay = c.at("weight_decay");
    if (!t.given("--clip")) r.optim.clip = c.at("clip");
    if (!t.given("--seed")) r.seed = c.at("seed");
    if (!t.given("--precision")) r.precision = parse_precision(c.value("precision", "fp32"));
    if (!t.given("--steps") && !t.given("--epochs")) r.steps = c.at("steps"), a.steps_set = true;
    const auto& extra = c.at("extra");
    if (!t.given("--corpus")) a.corpus = extra.value("corpus", a.corpus);
    if (!t.given("--val-fraction")) a.val_fraction = extra.value("val_fraction", a.val_fraction);
    // The run's cadence too, so that metrics.jsonl continues as it began.
    auto& ses = a.session;
    if (!t.given("--eval-every")) ses.eval_every = extra.value("eval_every", ses.eval_every);
    if (!t.given("--eval-windows"))
      ses.eval_windows = extra.value("eval_windows", ses.eval_windows);
    if (!t.given("--checkpoint-every"))
      ses.checkpoint_every = extra.value("checkpoint_every", ses.checkpoint_every);
    if (!t.given("--keep")) ses.keep = extra.value("keep", ses.keep);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(
        fmt::format("--resume: '{}/config.json' is unreadable ({}); give the run's "
                    "settings again",
                    a.session.run_dir, e.what()));
  }
}

// Every sphere (or pool thread) that computes shards holds its own workspace: refuse a run that
// cannot fit in memory instead of letting the kernel kill it halfway.
void check_memory(const RunConfig& r, int computing_workers) {
  long long avail_kb = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  long long value = 0;
  std::string unit;
  while (meminfo >> key >> value >> unit)
    if (key == "MemAvailable:") avail_kb = value;
  if (avail_kb <= 0) return;  // unknown: do not guess
  const double per = double(ShardWorker::memory_bytes(r));
  const double need = per * computing_workers + 4.0 * double(ParamLayout(r.model).total()) * 16;
  const double avail = double(avail_kb) * 1024.0;
  if (need > 0.9 * avail)
    throw ConfigError(fmt::format(
        "this run needs about {:.1f} GiB ({} computing spheres x {:.0f} MiB of workspace) but only "
        "{:.1f} GiB of memory are available; use fewer --spheres, a smaller --micro-batch or a "
        "smaller model",
        need / 1073741824.0, computing_workers, per / 1048576.0, avail / 1073741824.0));
}

std::unique_ptr<Backend> make_backend(const TrainArgs& a, const WindowSampler& sampler) {
  if (a.sync == "actors") return std::make_unique<TreeBackend>(a.run, sampler, a.tree);
  if (a.tree.faults.any())
    throw ConfigError("--inject and --chaos need --sync actors (the baselines cannot recover)");
  return make_pool_backend(a.sync, a.run, sampler, a.tree.spheres);
}

int cmd_train(const std::vector<std::string>& args) {
  TrainArgs a;
  a.run.steps = 2000;
  a.run.optim.lr = 1e-3;
  a.run.optim.warmup = 100;
  a.session.eval_every = 200;
  a.session.checkpoint_every = 200;
  a.tree.spheres = cores();
  a.tree.threads = cores();
  OptionTable t = train_options(a);
  t.parse(args);
  if (a.help) {
    std::cout << "usage: cllm train [options]\n\nTrains a GPT on a text corpus with a tree of "
                 "actor spheres; results are bit-identical for any sphere count, fan-out, "
                 "thread count and backend.\n"
              << t.help();
    return 0;
  }
  if (!t.positionals.empty())
    throw UsageError("unexpected argument '" + t.positionals[0] + "' (see cllm train --help)");
  if (a.session.run_dir.empty()) {
    if (a.session.resume) throw UsageError("--resume needs --run-dir (the run to continue)");
    a.session.run_dir = new_run_dir();
  }
  if (a.sync != "actors" && a.sync != "mutex" && a.sync != "barrier")
    throw UsageError("option --sync expects actors, mutex or barrier, got '" + a.sync + "'");

  if (a.session.resume) inherit_settings(a, t);

  // Model and batch shape.
  RunConfig& r = a.run;
  r.model = model_preset(a.preset);
  if (a.d_model) r.model.d_model = a.d_model;
  if (a.layers) r.model.n_layers = a.layers;
  if (a.heads) r.model.n_heads = a.heads;
  if (a.context) r.model.context = a.context;
  r.batch.context = r.model.context;
  if (!a.min_lr_set) r.optim.min_lr = r.optim.lr / 10;
  r.model.validate();
  r.batch.validate(r.model);
  validate(a.session.sampling);
  if (!(a.val_fraction >= 0 && a.val_fraction <= 0.5))
    throw UsageError(
        fmt::format("option --val-fraction must be in [0, 0.5], got {}", a.val_fraction));
  if (a.tree.faults.chaos_p < 0 || a.tree.faults.chaos_p >= 1)
    throw UsageError("option --chaos must be in [0, 1)");

  if (a.print_topology) {
    std::cout << Topology(a.tree.spheres, a.tree.fanout).render(r.batch.shards());
    return 0;
  }
  Topology(a.tree.spheres, a.tree.fanout);  // validates spheres and fan-out early

  // Corpus.
  ByteTokenizer tok;
  std::string corpus_path = a.corpus;
  if (corpus_path.empty()) {
    corpus_path = default_corpus();
    if (!std::filesystem::exists(corpus_path))
      throw CorpusError(fmt::format(
          "no --corpus given and the default corpus '{}' is missing; create it with "
          "'tools/get-default-corpus.sh' (Debian package bible-kjv) or pass --corpus PATH",
          corpus_path));
  }
  const Corpus corpus = load_corpus(corpus_path, tok, a.val_fraction, size_t(r.batch.context) + 1);
  {  // recorded absolute, so that --resume works from any folder
    std::error_code ec;
    const auto abs = std::filesystem::absolute(corpus_path, ec);
    if (!ec) corpus_path = abs.lexically_normal().string();
  }
  if (a.epochs > 0) {
    if (a.steps_set) throw UsageError("give either --steps or --epochs, not both");
    const double steps =
        std::ceil(a.epochs * double(corpus.train.size()) / double(r.batch.tokens_per_step()));
    if (!(steps <= double(int64_t(1) << 40)))
      throw UsageError(
          fmt::format("--epochs {} means {:g} steps, more than 2^40", a.epochs, steps));
    r.steps = std::max<int64_t>(1, int64_t(std::ceil(a.epochs * double(corpus.train.size()) /
                                                     double(r.batch.tokens_per_step()))));
  } else if (a.epochs < 0) {
    throw UsageError("option --epochs must be positive");
  }
  r.data_sha256 = sha256_hex(corpus.train.data(), corpus.train.size() * sizeof(int32_t));
  r.optim.total_steps = r.steps;
  if (r.optim.warmup >= r.steps) {
    if (t.given("--warmup"))
      throw UsageError(fmt::format("--warmup {} is not shorter than the run ({} steps)",
                                   r.optim.warmup, r.steps));
    r.optim.warmup = r.steps / 10;  // the default is for long runs
  }
  r.validate();

  check_memory(r, std::min(a.tree.spheres, r.batch.shards()));
  WindowSampler sampler(corpus.train, r.batch.context, sampler_seed(r.seed));
  auto backend = make_backend(a, sampler);
  std::cout << fmt::format(
      "cllm train: {} ({} params) | corpus {} ({} files, {} binary skipped): {} train / {} val "
      "tokens | batch {}x{} in {} shards | {} steps | sync {} | {} spheres, fan-out {}, {} "
      "threads\n",
      r.model.describe(), ParamLayout(r.model).num_parameters(), corpus_path, corpus.files.size(),
      corpus.files_skipped, corpus.train.size(), corpus.val.size(), r.batch.batch, r.batch.context,
      r.batch.shards(), r.steps, a.sync, a.tree.spheres, a.tree.fanout, a.tree.threads);
  std::cout.flush();

  a.session.extra_config = {{"sync", a.sync},
                            {"val_fraction", a.val_fraction},
                            {"eval_every", a.session.eval_every},
                            {"eval_windows", a.session.eval_windows},
                            {"checkpoint_every", a.session.checkpoint_every},
                            {"keep", a.session.keep},
                            {"spheres", a.tree.spheres},
                            {"fanout", a.tree.fanout},
                            {"threads", a.tree.threads},
                            {"corpus", corpus_path}};
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  ActorCheckpointSink writer;
  const SessionResult res =
      run_session(r, corpus, tok, *backend, a.session, std::cout, std::cerr, &writer);
  backend.reset();
  std::cout << fmt::format(
      "steps {} | final loss {:.4f} | val loss {} | {:.0f} tokens/s (median) | run folder {}\n",
      res.steps_done, res.final_loss, res.val_loss >= 0 ? fmt::format("{:.4f}", res.val_loss) : "-",
      res.tokens_per_s, a.session.run_dir);
  if (!res.stop_reason.empty()) std::cerr << "cllm: " << res.stop_reason << "\n";
  std::cout << "weights sha256 " << res.weights_sha256 << std::endl;
  return res.exit_code;
}

int cmd_sample(const std::vector<std::string>& args) {
  std::string ckpt, prompt;
  int tokens = 200;
  bool help = false;
  SamplingOptions so;
  OptionTable t;
  t.add("--checkpoint", "FILE", "a checkpoint written by cllm train", "",
        [&](auto& v) { ckpt = v; });
  t.add("--prompt", "TEXT", "text to continue", "\"\"", [&](auto& v) { prompt = v; });
  t.add("--tokens", "N", "tokens to generate", "200",
        [&](auto& v) { tokens = int(to_int("--tokens", v, 0, 1 << 24)); });
  t.add("--temperature", "T", "sampling temperature (0 = greedy)", "0.8",
        [&](auto& v) { so.temperature = to_double("--temperature", v); });
  t.add("--top-k", "K", "sample among the K most likely tokens (0 = off)", "40",
        [&](auto& v) { so.top_k = int(to_int("--top-k", v, 0, 1 << 20)); });
  t.add("--top-p", "P", "nucleus sampling mass (1 = off)", "0.95",
        [&](auto& v) { so.top_p = to_double("--top-p", v); });
  t.add("--seed", "N", "sampling seed", "1",
        [&](auto& v) { so.seed = uint64_t(to_int("--seed", v, 0, INT64_MAX)); });
  t.add("--config", "FILE", "read options from FILE", "", [](auto&) {});
  t.add("--help,-h", "", "show this help", "", [&](auto&) { help = true; });
  t.parse(args);
  if (help) {
    std::cout << "usage: cllm sample --checkpoint FILE [options]\n" << t.help();
    return 0;
  }
  if (!t.positionals.empty()) throw UsageError("unexpected argument '" + t.positionals[0] + "'");
  if (ckpt.empty()) throw UsageError("cllm sample needs --checkpoint FILE");
  validate(so);
  const Checkpoint ck = load_checkpoint(ckpt);
  const auto tok = make_tokenizer(ck.tokenizer_kind, ck.tokenizer_data);
  // Streamed: each token is printed as soon as it is drawn (a long sample shows text at once).
  std::cout << prompt << std::flush;
  generate(ck.model, ck.weights.data(), tok->encode(prompt), tokens, so,
           [&](int32_t id) { std::cout << tok->decode({id}) << std::flush; });
  std::cout << std::endl;
  return 0;
}

void usage(std::ostream& os) {
  os << "usage: cllm <command> [options]\n\n"
        "commands:\n"
        "  train    train a model (cllm train --help)\n"
        "  sample   generate text from a checkpoint (cllm sample --help)\n";
}

}  // namespace

int main(int argc, char** argv) {
  // Partial sums (megabytes each) are allocated in one sphere and freed in another every step:
  // keep such blocks in the heap for reuse instead of fresh mmap()s that page-fault again.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    usage(std::cerr);
    return 2;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  try {
    if (cmd == "train") return cmd_train(args);
    if (cmd == "sample") return cmd_sample(args);
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      usage(std::cout);
      return 0;
    }
    std::cerr << "cllm: error: unknown command '" << cmd
              << "' (commands: train, sample; see cllm --help)\n";
    return 2;
  } catch (const UsageError& e) {
    std::cerr << "cllm: error: " << e.what() << "\n";
  } catch (const ConfigError& e) {
    std::cerr << "cllm: error: " << e.what() << "\n";
  } catch (const CorpusError& e) {
    std::cerr << "cllm: error: " << e.what() << "\n";
  } catch (const CheckpointError& e) {
    std::cerr << "cllm: error: " << e.what() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "cllm: error: " << e.what() << "\n";
    return 1;
  }
  return 2;
}
