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
#include "actors/tree_backend.hpp"
#include "apps/cmd_compare.hpp"
#include "apps/cmd_export.hpp"
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
#include "src/checkpoint.hpp"
#include "src/cluster_auth.hpp"
#include "src/corpus.hpp"
#include "src/generate.hpp"
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

// Every sphere (or pool thread) that computes shards holds its own workspace: refuse a run that
// cannot fit in memory instead of letting the kernel kill it halfway.
void check_memory(const RunConfig& r, int computing_spheres) {
  const double avail = available_memory_bytes();
  if (avail <= 0) return;  // unknown: do not guess
  const double per = double(ShardWorker::memory_bytes(r));
  const double need = per * computing_spheres + 4.0 * double(ParamLayout(r.model).total()) * 16;
  if (need > 0.9 * avail)
    throw ConfigError(fmt::format(
        "this run needs about {:.1f} GiB ({} computing spheres x {:.0f} MiB of workspace) but only "
        "{:.1f} GiB of memory are available; use fewer --spheres, a smaller --micro-batch or a "
        "smaller model",
        need / 1073741824.0, computing_spheres, per / 1048576.0, avail / 1073741824.0));
}

// --listen: where nodes dial, and the key they must prove. Listening where other machines can
// reach it without a key is refused.
ClusterOptions cluster_options(const TrainSettings& s, const Tokenizer& tok) {
  ClusterOptions c;
  if (s.listen.empty()) return c;
  const HostPort hp = parse_host_port(s.listen, "--listen", /*port_zero_ok=*/true);
  c.listen = true, c.host = hp.host, c.port = hp.port;
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
  c.tokenizer_kind = tok.kind(), c.tokenizer_data = tok.serialize();
  return c;
}

std::unique_ptr<Backend> make_backend(const TrainSettings& s, const RunConfig& r,
                                      const WindowSampler& sampler, const Tokenizer& tok) {
  if (s.sync != "actors") return make_pool_backend(s.sync, r, sampler, s.spheres);
  TreeOptions tree;
  tree.spheres = s.spheres, tree.fanout = s.fanout, tree.placement = s.placement;
  tree.threads = s.threads, tree.faults = s.faults, tree.policy = s.policy;
  tree.cluster = cluster_options(s, tok);
  auto backend = std::make_unique<TreeBackend>(r, sampler, tree);
  if (tree.cluster.listen) {
    std::cout << fmt::format("listening for nodes on {}:{}\n", tree.cluster.host,
                             backend->listening_port())
              << std::flush;
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
      "tokens | batch {}x{} in {} shards | {} steps | sync {} | {} spheres, fan-out {}, {} "
      "threads\n",
      r.model.describe(), ParamLayout(r.model).num_parameters(), s.corpus, corpus.files.size(),
      corpus.files_skipped, corpus.train.size(), corpus.val.size(), r.batch.batch, r.batch.context,
      r.batch.shards(), r.steps, s.sync, s.spheres, s.fanout, s.threads);
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
    const auto dealt = deal_shards(all, capacity);
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
    resume_from = folder->newest_valid_checkpoint(std::cerr);
    inherit_settings(s, recorded_settings(resume_from->run, folder->read_json("config.json")));
  }
  s.validate();
  if (s.print_topology) {
    std::cout << topology_text(s);
    return 0;
  }
  // The corpus and its tokenizer (the vocabulary follows the tokenizer).
  CorpusText text = read_corpus_text(s);
  const auto tok = run_tokenizer(s.tokenizer, text, s.val_fraction,
                                 resume_from ? &*resume_from : nullptr, std::cout);
  const Corpus corpus =
      encode_corpus(std::move(text), *tok, s.val_fraction, size_t(s.shape().batch.context) + 1);
  const RunConfig r =
      s.run_config(corpus.train.size(), data_fingerprint(corpus, *tok), tok->vocab_size());
  if (s.spheres > 0)
    check_memory(r, ShardPlan(Topology(s.spheres, s.fanout), r.batch.shards(), s.placement)
                        .computing_spheres());
  WindowSampler sampler(corpus.train, r.batch.context, sampler_seed(r.seed));
  auto backend = make_backend(s, r, sampler, *tok);
  // Only now, with every input accepted, does a new run get its folder.
  if (!folder) folder.emplace(RunFolder::create(s.run_dir, s.overwrite));
  print_header(s, r, corpus);
  const auto live = s.serve_port >= 0
                        ? cli::serve_training(folder->dir(), s.serve_host, s.serve_port, std::cout)
                        : nullptr;
  ActorCheckpointSink writer;
  StopToken stop;
  const SessionResult res = train_with_signals(
      Session{s, r, corpus, *tok, *backend, *folder, writer, stop, std::cout, std::cerr},
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
  t.add("--temperature", "T", "sampling temperature (0 = greedy)", "0.8",
        [&](auto& v) { so.temperature = to_double("--temperature", v); });
  t.add("--top-k", "K", "sample among the K most likely tokens (0 = off)", "40",
        [&](auto& v) { so.top_k = int(to_int("--top-k", v, 0, 1 << 20)); });
  t.add("--top-p", "P", "nucleus sampling mass (1 = off)", "0.95",
        [&](auto& v) { so.top_p = to_double("--top-p", v); });
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
        "--help)\n";
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
                 "serve, diff, runs, tokenizer, export; see cllm --help)\n";
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
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      usage(std::cout);
      return 0;
    }
    std::cerr << "cllm: error: unknown command '" << cmd
              << "' (commands: train, sample, node, report, serve, diff, runs, tokenizer, export; "
                 "see cllm "
                 "--help)\n";
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
