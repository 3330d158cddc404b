// cllm: train a small GPT on your text with a tree of actor spheres, and sample from it.
// Thin wiring only: options -> corpus -> backend -> the shared session loop.
#include <malloc.h>

#include <unistd.h>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <fmt/format.h>

#include "actors/checkpoint_writer.hpp"
#include "actors/tree_backend.hpp"
#include "apps/cmd_compare.hpp"
#include "apps/cmd_export.hpp"
#include "apps/cmd_import.hpp"
#include "apps/cmd_node.hpp"
#include "apps/cmd_report.hpp"
#include "apps/cmd_tokenizer.hpp"
#include "run/net_address.hpp"
#include "run/options.hpp"
#include "run/run_folder.hpp"
#include "run/session.hpp"
#include "run/settings.hpp"
#include "run/sysinfo.hpp"
#include "src/atomic_file.hpp"
#include "src/bpe.hpp"
#include "src/checkpoint.hpp"
#include "src/cluster_auth.hpp"
#include "src/cluster_guard.hpp"
#include "src/corpus.hpp"
#include "src/generate.hpp"
#include "src/hf_import.hpp"
#include "src/pool_backends.hpp"
#include "src/safe_text.hpp"
#include "src/safetensors.hpp"
#include "src/sha256.hpp"
#include "src/tokenizer.hpp"

using namespace cllm;
using cli::OptionTable;
using cli::to_double;
using cli::to_int;
using cli::UsageError;

namespace {

volatile std::sig_atomic_t g_signals = 0;
StopToken* g_stop = nullptr;  // the running session's, while its handlers are installed
void on_signal(int sig) {
  if (++g_signals > 1) _exit(128 + sig);  // a second signal: leave at once
  if (g_stop) g_stop->request();
}

// The memory a run needs: every sphere (or pool thread) that computes shards holds its own
// workspace (activations and one float gradient; a barrier-pool thread also a whole int64 sum),
// and the shared state (weights, moments, exact sums in owner slices) is counted once.
struct RunMemory {
  double per_sphere = 0, shared = 0;
  double total(int computing_spheres) const { return per_sphere * computing_spheres + shared; }
};
RunMemory run_memory(const RunConfig& r, const std::string& backend) {
  const double whole_sum = backend == "barrier" ? double(ShardWorker::partial_sum_bytes(r)) : 0;
  return {double(ShardWorker::memory_bytes(r)) + whole_sum,
          4.0 * double(ParamLayout(r.model).total()) * 16};
}

// Refuses a run that cannot fit in memory instead of letting the kernel kill it halfway.
void check_memory(const RunConfig& r, const std::string& backend, int computing_spheres) {
  const double avail = available_memory_bytes();
  if (avail <= 0) return;  // unknown: do not guess
  const RunMemory mem = run_memory(r, backend);
  const double need = mem.total(computing_spheres);
  if (need <= 0.9 * avail) return;
  // What would fit: recomputing activations, else fewer computing spheres, else a smaller
  // micro-batch, else a smaller model.
  RunConfig again = r;
  again.recompute = true;
  const RunMemory lean = run_memory(again, backend);
  const int fit = int(std::floor((0.9 * avail - mem.shared) / mem.per_sphere));
  std::string hint;
  if (!r.recompute && lean.total(computing_spheres) <= 0.9 * avail) {
    hint = fmt::format("--recompute would fit ({:.0f} MiB of workspace per sphere)",
                       lean.per_sphere / 1048576.0);
  } else if (fit >= 1 && fit < computing_spheres) {
    hint = fmt::format("--spheres {} would fit ({} computing spheres)", fit, fit);
  } else {
    hint = r.batch.micro_batch > 1 ? "use a smaller --micro-batch or a smaller model"
                                   : "use a smaller model (or a machine with more memory)";
  }
  throw ConfigError(fmt::format(
      "this run needs about {:.1f} GiB ({} computing spheres x {:.0f} MiB of workspace) but only "
      "{:.1f} GiB of memory are available; {}",
      need / 1073741824.0, computing_spheres, mem.per_sphere / 1048576.0, avail / 1073741824.0,
      hint));
}

// --listen: where nodes dial, and the key they must prove. Listening where other machines can
// reach it without a key is refused.
ClusterOptions cluster_options(const TrainSettings& s, const Tokenizer& tok) {
  ClusterOptions c;
  if (s.listen.empty()) return c;
  // A peer that hangs up must cost an EPIPE, not the run: OpenSSL and the guard's relays write to
  // sockets whose other end may be gone.
  std::signal(SIGPIPE, SIG_IGN);
  const HostPort hp = parse_host_port(s.listen, "--listen", /*port_zero_ok=*/true);
  c.listen = true, c.host = hp.host, c.port = hp.port;
  if (const std::string why = listen_problem(hp); !why.empty())
    throw UsageError(fmt::format("--listen {}: cannot listen there: {}", s.listen, why));
  if (!s.cluster_key.empty()) c.key = read_cluster_key(s.cluster_key);
  c.tls = {s.tls_cert, s.tls_key, s.tls_ca};
  check_tls_files(c.tls);
  // With TLS the CA authenticates both sides (mutual certificate checks), so a key is optional.
  if (c.key.empty() && !c.tls.enabled() && !is_loopback(hp.host))
    throw UsageError(fmt::format(
        "--listen {} can be reached from other machines, and nodes would join unauthenticated; "
        "create a key (head -c 32 /dev/urandom | base64 > key.txt; chmod 600 key.txt) and pass "
        "--cluster-key key.txt to the root and to every node, or use TLS (--tls-cert, --tls-key, "
        "--tls-ca; see docs/cluster.md)",
        s.listen));
  c.heartbeat_ms = s.heartbeat_ms, c.connection_timeout_s = s.connection_timeout;
  c.orphan_timeout_s = s.join_timeout;
  c.mesh = s.node_reduce == "mesh";
  c.tokenizer_kind = tok.kind(), c.tokenizer_data = tok.serialize();
  return c;
}

// `guard`: with a cluster key, the guard in front of the actor system's port (it must outlive the
// backend, whose end is told to the nodes through it).
std::unique_ptr<Backend> make_backend(const TrainSettings& s, const RunConfig& r,
                                      const WindowSampler& sampler, const Tokenizer& tok,
                                      std::unique_ptr<ClusterGuard>& guard) {
  if (s.backend != "actors") return make_pool_backend(s.backend, r, sampler, s.spheres);
  TreeOptions tree;
  tree.spheres = s.spheres, tree.fanout = s.fanout, tree.placement = s.placement;
  tree.threads = s.threads, tree.faults = s.faults, tree.policy = s.policy;
  tree.cluster = cluster_options(s, tok);
  // With a key, CAF listens on loopback only and the guard on --listen: no unproven byte reaches
  // BASP (src/cluster_guard.hpp).
  const std::string host = tree.cluster.host;
  const uint16_t port = tree.cluster.port;
  if (!tree.cluster.key.empty()) tree.cluster.host = "127.0.0.1", tree.cluster.port = 0;
  auto backend = std::make_unique<TreeBackend>(r, sampler, tree);
  if (tree.cluster.listen) {
    uint16_t shown = backend->listening_port();
    if (!tree.cluster.key.empty()) {
      try {
        guard = std::make_unique<ClusterGuard>(
            host, port, tree.cluster.key, backend->listening_port(),
            [](const std::string& line) { std::fprintf(stderr, "cllm: %s\n", line.c_str()); });
      } catch (const std::runtime_error& e) {
        throw UsageError(fmt::format("--listen {}: {}", s.listen, e.what()));
      }
      shown = guard->port();
    }
    std::cout << fmt::format("listening for nodes on {}:{}\n", host, shown) << std::flush;
    if (s.min_nodes > 0) backend->wait_for_nodes(s.min_nodes, s.join_timeout, std::cout);
  }
  return backend;
}

// The corpus text, with its path made absolute in the settings (so that --resume works from any
// folder).
CorpusText read_corpus_text(TrainSettings& s) {
  std::string path = s.corpus;
  if (path.empty()) {
    path = default_corpus_path();
    if (!std::filesystem::exists(path))
      throw CorpusError(fmt::format(
          "no --corpus given and the default corpus '{}' is missing; create it with "
          "'tools/get-default-corpus.sh' (Debian package bible-kjv) or pass --corpus PATH",
          path));
  }
  CorpusText text = read_corpus(path);
  std::error_code ec;
  const auto abs = std::filesystem::absolute(path, ec);
  s.corpus = ec ? path : abs.lexically_normal().string();
  return text;
}

void print_header(const TrainSettings& s, const RunConfig& r, const Corpus& corpus) {
  std::cout << fmt::format(
      "cllm train: {} ({} params) | corpus {} ({} files, {} binary skipped): {} train / {} val "
      "tokens | batch {}x{} in {} shards | {} steps | backend {} | {} spheres, fan-out {}, {} "
      "threads\n",
      r.model.describe(), ParamLayout(r.model).num_parameters(), s.corpus, corpus.files.size(),
      corpus.files_skipped, corpus.train.size(), corpus.val.size(), r.batch.batch, r.batch.context,
      r.batch.shards(), r.steps, s.backend, s.spheres, s.fanout, s.threads);
  std::cout.flush();
}

void print_result(const SessionResult& res, const std::string& run_dir) {
  std::cout << fmt::format(
      "steps {} | final loss {:.4f} | val loss {} | {:.0f} tokens/s (median) | run folder {}\n",
      res.steps_done, res.final_loss, res.val_loss >= 0 ? fmt::format("{:.4f}", res.val_loss) : "-",
      res.tokens_per_s, run_dir);
  if (!res.stop_reason.empty()) std::cerr << "cllm: " << res.stop_reason << "\n";
  std::cout << "weights sha256 " << res.weights_sha256 << std::endl;
}

// Runs the session with SIGINT/SIGTERM asking it to stop after the current step.
SessionResult train_with_signals(const Session& session, const std::optional<Checkpoint>& from,
                                 StopToken& stop) {
  g_stop = &stop;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  SessionResult res = run_session(session, from);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  g_stop = nullptr;
  return res;
}

// What a computing sphere holds, and what exists once per process (split over the owners).
// --print-topology: the local tree and its shards; with --plan-nodes, how a step's shards would be
// dealt over the root and nodes of those capacities (threads).
std::string topology_text(const TrainSettings& s) {
  const int shards = s.shape().batch.shards();
  std::vector<int> capacity = {s.spheres > 0 ? std::min(s.spheres, s.threads) : 0};
  std::vector<std::string> names = {"root (local spheres)"};
  for (const auto& item : cli::split(s.plan_nodes, ',')) {
    if (item.empty()) continue;
    capacity.push_back(int(cli::to_int("--plan-nodes", item, 1, 4096)));
    names.push_back(fmt::format("node {} ({} threads)", names.size(), capacity.back()));
  }
  std::string out;
  if (capacity.size() > 1) {
    std::vector<size_t> all(static_cast<size_t>(shards));
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    const auto dealt = deal_shards(all, std::vector<double>(capacity.begin(), capacity.end()));
    out += fmt::format("{} shards per step over {} members:\n", shards, capacity.size());
    for (size_t m = 0; m < dealt.size(); ++m) {
      out += fmt::format("  {}: {} shards", names[m], dealt[m].size());
      for (size_t p : dealt[m]) out += fmt::format(" {}", p);
      out += "\n";
    }
    if (s.spheres == 0) return out;
    const int local = int(dealt[0].size());
    const Topology topo(s.spheres, s.fanout);
    return out + "the root's own tree:\n" + ShardPlan(topo, local, s.placement).render(topo);
  }
  if (s.spheres == 0) return "no local spheres: every shard goes to the nodes\n";
  const Topology topo(s.spheres, s.fanout);
  return ShardPlan(topo, shards, s.placement).render(topo);
}

// The vocabulary a run will have, without reading the corpus (for --print-topology).
int planned_vocab(const TrainSettings& s, const std::optional<ModelConfig>& init_model,
                  const std::optional<Checkpoint>& resume_from) {
  if (s.tokenizer.empty()) {
    if (init_model) return init_model->vocab;
    if (resume_from) return resume_from->model.vocab;
    return preset_has_gpt2_vocab(s.model) ? kGpt2Vocab : 256;
  }
  if (s.tokenizer.rfind("bpe:", 0) == 0)
    return int(to_int("--tokenizer bpe:N", s.tokenizer.substr(4), BpeTokenizer::kMinVocab,
                      BpeTokenizer::kMaxVocab));
  return load_tokenizer(s.tokenizer)->vocab_size();
}

// --print-topology's second part: the model's size and the memory the run will need.
std::string memory_text(const TrainSettings& s, const RunConfig& r) {
  const int computing =
      s.spheres > 0 ? ShardPlan(Topology(s.spheres, s.fanout), r.batch.shards(), s.placement)
                          .computing_spheres()
                    : 0;
  const RunMemory mem = run_memory(r, s.backend);
  const double mib = 1048576.0, gib = 1073741824.0;
  const double avail = available_memory_bytes();
  const double params = double(ParamLayout(r.model).total());
  const double work = double(
      Model<float>::workspace_bytes(r.model, r.batch.micro_batch, r.batch.context, r.recompute));
  return fmt::format(
      "model: {}: {} parameters\n"
      "workspace per computing sphere: {:.0f} MiB (micro-batch {} x {} tokens: activations {:.1f} "
      "MiB{} + one float gradient {:.1f} MiB{})\n"
      "once per process: exact sums {:.1f} MiB and AdamW moments {:.1f} MiB in {} owner slices of "
      "{}-element blocks\n"
      "memory the run needs: about {:.2f} GiB ({} computing spheres x {:.0f} MiB + {:.0f} MiB "
      "shared){}\n",
      r.model.describe(), ParamLayout(r.model).num_parameters(), mem.per_sphere / mib,
      r.batch.micro_batch, r.batch.context, work / mib, r.recompute ? ", recomputed" : "",
      4 * params / mib, s.backend == "barrier" ? " + a whole int64 sum" : "", 8 * params / mib,
      8 * params / mib, std::max(1, s.threads), kSliceBlock, mem.total(computing) / gib, computing,
      mem.per_sphere / mib, mem.shared / mib,
      avail > 0 ? fmt::format("; {:.1f} GiB available", avail / gib) : "");
}

// --init-from: the model's shape is the folder's. Sizes given on the command line must agree.
void take_init_shape(TrainSettings& s, const ModelConfig& m) {
  const auto agree = [&](const char* option, int& dst, int value, const char* key) {
    if (s.given.count(option) && dst != value)
      throw UsageError(fmt::format("{} {} differs from the --init-from folder's {} {}", option, dst,
                                   key, value));
    dst = value;
  };
  if (s.given.count("--model")) {
    const ModelConfig p = model_preset(s.model);
    if (p.d_model != m.d_model || p.layers != m.layers || p.n_heads != m.n_heads ||
        p.context != m.context)
      throw UsageError(fmt::format(
          "--model {} is d {}, {} layers, {} heads, context {}, but the --init-from folder holds "
          "{}; leave --model out",
          s.model, p.d_model, p.layers, p.n_heads, p.context, m.describe()));
  }
  agree("--d-model", s.d_model, m.d_model, "n_embd");
  agree("--layers", s.layers, m.layers, "n_layer");
  agree("--heads", s.heads, m.n_heads, "n_head");
  agree("--context", s.context, m.context, "n_positions");
}

// The run's tokenizer: with --init-from and no --tokenizer the folder's, else --tokenizer's, the
// resumed run's or bytes (run_tokenizer); with --init-from, its vocabulary must be the model's.
std::unique_ptr<Tokenizer> train_tokenizer(const TrainSettings& s, const CorpusText& text,
                                           const std::optional<ModelConfig>& init_model,
                                           const std::optional<Checkpoint>& resume_from) {
  std::unique_ptr<Tokenizer> tok;
  if (init_model && s.tokenizer.empty()) {
    tok = read_hf_tokenizer(s.init_from);
    if (!tok)
      throw ConfigError(fmt::format(
          "the --init-from folder has no tokenizer (vocab.json + merges.txt, or tokenizer.json); "
          "give one with --tokenizer"));
  } else {
    tok = run_tokenizer(s.tokenizer, text, s.val_fraction, resume_from ? &*resume_from : nullptr,
                        std::cout);
  }
  if (init_model && tok->vocab_size() != init_model->vocab)
    throw ConfigError(
        fmt::format("the tokenizer has {} tokens but the --init-from model's vocabulary is {}",
                    tok->vocab_size(), init_model->vocab));
  return tok;
}

int cmd_train(const std::vector<std::string>& args) {
  TrainSettings s = parse_train_settings(args);
  if (s.help) {
    TrainSettings defaults;
    std::cout << "usage: cllm train [options]\n\nTrains a GPT on a text corpus with a tree of "
                 "actor spheres; results are bit-identical for any sphere count, fan-out, "
                 "thread count and backend.\n"
              << train_options(defaults).help();
    return 0;
  }
  // With --resume, the run's own settings fill in what is not given again.
  std::optional<RunFolder> folder;
  std::optional<Checkpoint> resume_from;
  if (s.resume) {
    if (s.run_dir.empty()) throw UsageError("--resume needs --run-dir (the run to continue)");
    folder.emplace(RunFolder::open(s.run_dir));
    resume_from = folder->checkpoint_to_resume(std::cerr);
    inherit_settings(s, recorded_settings(resume_from->run, folder->read_json("config.json")));
  }
  s.validate();
  // --init-from (a new run): the folder's shape, checked before anything is read or computed.
  std::optional<ModelConfig> init_model;
  if (!s.init_from.empty() && !resume_from) {
    init_model = read_hf_gpt2_config(s.init_from);
    take_init_shape(s, *init_model);
  }
  if (s.print_topology) {
    std::cout << topology_text(s)
              << memory_text(s, s.run_config(0, "", planned_vocab(s, init_model, resume_from)));
    return 0;
  }
  // The corpus and its tokenizer (the vocabulary follows the tokenizer; with --init-from and no
  // --tokenizer, the folder's).
  CorpusText text = read_corpus_text(s);
  const std::unique_ptr<Tokenizer> tok = train_tokenizer(s, text, init_model, resume_from);
  const Corpus corpus =
      encode_corpus(std::move(text), *tok, s.val_fraction, size_t(s.shape().batch.context) + 1);
  const RunConfig r =
      s.run_config(corpus.train.size(), data_fingerprint(corpus, *tok), tok->vocab_size());
  AlignedVector<float> init_weights;
  if (init_model) {
    if (r.model != *init_model)
      throw ConfigError(fmt::format("the run's model ({}) is not the --init-from folder's ({})",
                                    r.model.describe(), init_model->describe()));
    init_weights = read_hf_gpt2_weights(s.init_from, r.model);
    std::cout << fmt::format("starting from the weights of {}\n", printable(s.init_from, 200));
  }
  if (s.spheres > 0)
    check_memory(r, s.backend,
                 ShardPlan(Topology(s.spheres, s.fanout), r.batch.shards(), s.placement)
                     .computing_spheres());
  WindowSampler sampler(corpus.train, r.batch.context, sampler_seed(r.seed));
  if (!folder) RunFolder::check_new(s.run_dir, s.overwrite);  // before waiting for nodes
  std::unique_ptr<ClusterGuard> guard;  // before the backend: destroyed after it
  auto backend = make_backend(s, r, sampler, *tok, guard);
  // Only now, with every input accepted, does a new run get its folder.
  if (!folder) folder.emplace(RunFolder::create(s.run_dir, s.overwrite));
  print_header(s, r, corpus);
  const auto live = s.serve_port >= 0
                        ? cli::serve_training(folder->dir(), s.serve_host, s.serve_port, std::cout)
                        : nullptr;
  ActorCheckpointSink writer;
  StopToken stop;
  const SessionResult res =
      train_with_signals(Session{s, r, corpus, *tok, *backend, *folder, writer, stop, std::cout,
                                 std::cerr, init_model ? &init_weights : nullptr},
                         resume_from, stop);
  print_result(res, folder->dir());
  return res
      .exit_code;  // the tree is torn down after the result is out (a long chain takes a while)
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
  sampling_options(t, so);
  t.add("--seed", "N", "sampling seed", "1",
        [&](auto& v) { so.seed = uint64_t(to_int("--seed", v, 0, INT64_MAX)); });
  t.add("--decode-precision", "fp32|bf16",
        "weights of the decoding steps (bf16: a rounded copy, about twice as fast; other text)",
        "fp32", [&](auto& v) {
          if (v != "fp32" && v != "bf16")
            throw UsageError("--decode-precision must be fp32 or bf16 (got '" + printable(v, 40) +
                             "')");
          so.bf16_weights = v == "bf16";
        });
  t.add("--config", "FILE", "read options from FILE", "", [](auto&) {});
  t.add("--help,-h", "", "show this help", "", [&](auto&) { help = true; });
  t.parse(args);
  if (help) {
    std::cout << "usage: cllm sample --checkpoint FILE [options]\n" << t.help();
    return 0;
  }
  if (!t.positionals.empty())
    throw UsageError("unexpected argument '" + printable(t.positionals[0], 60) + "'");
  if (ckpt.empty()) throw UsageError("cllm sample needs --checkpoint FILE");
  validate(so);
  const Checkpoint ck = load_checkpoint(ckpt, /*weights_only=*/true);
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
        "  sample   generate text from a checkpoint (cllm sample --help)\n"
        "  node     join a training run on another machine as a subtree of spheres (cllm node "
        "--help)\n"
        "  report   write one self-contained HTML page of a run, or of runs compared (cllm "
        "report --help)\n"
        "  serve    serve a live page of a run or of several (cllm serve --help)\n"
        "  diff     the first step where two runs' weights differ (cllm diff --help)\n"
        "  runs     list the runs of a folder (cllm runs --help)\n"
        "  tokenizer  train, encode or decode with a tokenizer (cllm tokenizer --help)\n"
        "  export   write a checkpoint as a Hugging Face folder or a GGUF file (cllm export "
        "--help)\n"
        "  import   a Hugging Face GPT-2 folder as a checkpoint (cllm import --help)\n";
}

}  // namespace

int main(int argc, char** argv) {
  // Partial sums (megabytes each) are allocated in one sphere and freed in another every step:
  // keep such blocks in the heap for reuse instead of fresh mmap()s that page-fault again.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << "cllm: error: no command given (commands: train, sample, node, report, "
                 "serve, diff, runs, tokenizer, export, import; see cllm --help)\n";
    return 2;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  try {
    if (cmd == "train") return cmd_train(args);
    if (cmd == "sample") return cmd_sample(args);
    if (cmd == "node") return cmd_node(args);
    if (cmd == "report") return cli::cmd_report(args);
    if (cmd == "serve") return cli::cmd_serve(args);
    if (cmd == "diff") return cli::cmd_diff(args);
    if (cmd == "runs") return cli::cmd_runs(args);
    if (cmd == "tokenizer") return cmd_tokenizer(args);
    if (cmd == "export") return cmd_export(args);
    if (cmd == "import") return cmd_import(args);
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      usage(std::cout);
      return 0;
    }
    std::cerr << "cllm: error: unknown command '" << cmd
              << "' (commands: train, sample, node, report, serve, diff, runs, tokenizer, export, "
                 "import; see cllm --help)\n";
    return 2;
  } catch (const UsageError& e) {
    std::cerr << "cllm: error: " << printable(e.what()) << "\n";
  } catch (const ConfigError& e) {
    std::cerr << "cllm: error: " << printable(e.what()) << "\n";
  } catch (const CorpusError& e) {
    std::cerr << "cllm: error: " << printable(e.what()) << "\n";
  } catch (const CheckpointError& e) {
    std::cerr << "cllm: error: " << printable(e.what()) << "\n";
  } catch (const FileError& e) {
    std::cerr << "cllm: error: " << printable(e.what()) << "\n";
    return 5;
  } catch (const std::exception& e) {
    std::cerr << "cllm: error: " << printable(e.what()) << "\n";
    return 1;
  }
  return 2;
}
