#pragma once
// The settings of `cllm train`, in one typed struct: the defaults are its member initialisers,
// the option table binds each option to a member (and shows the member's value as the default in
// --help), config files and --resume go through that same table, and config.json and every
// checkpoint record it (OptionTable::to_json).
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "run/options.hpp"
#include "src/cluster_timing.hpp"
#include "src/faults.hpp"
#include "src/generate.hpp"
#include "src/supervision.hpp"
#include "src/topology.hpp"
#include "src/training.hpp"

namespace cllm {

struct TrainSettings {
  TrainSettings();  // the defaults that depend on the machine (spheres, threads = cores)

  // Data
  std::string corpus;  // empty: the built-in default corpus
  double val_fraction = 0.1;
  std::string tokenizer;  // empty: byte, or with --resume the run's (apps/cmd_tokenizer.hpp)
  // Model: a preset, and sizes that override it (0 = the preset's)
  std::string model = "small";
  int d_model = 0, layers = 0, heads = 0, context = 0;
  std::string init_from;  // a Hugging Face GPT-2 folder whose weights the run starts from
  // Training: the library's defaults (src/config.hpp, src/training.hpp), declared once there
  int64_t steps = RunConfig().steps;
  double epochs = 0;  // > 0: steps from the corpus size instead
  int batch = BatchConfig().batch, micro_batch = BatchConfig().micro_batch;
  double lr = OptimConfig().lr;
  double min_lr = -1;  // < 0: lr / 10 (the library's default is the same ratio)
  int64_t warmup = OptimConfig().warmup;
  double weight_decay = OptimConfig().weight_decay, clip = OptimConfig().clip;
  uint64_t seed = RunConfig().seed;
  std::string precision = "fp32";  // or bf16 (src/training.hpp)
  // Spheres
  std::string backend = "actors";
  int spheres = 1, fanout = 12, threads = 1;
  Placement placement = Placement::bfs;
  bool recompute = false;  // activation checkpointing (RunConfig::recompute)
  // Spheres on other machines (cllm node)
  std::string listen;                     // HOST:PORT nodes dial; empty: none
  std::string cluster_key;                // a key file; required off loopback without TLS
  std::string tls_cert, tls_key, tls_ca;  // the cluster's TLS (all three or none)
  int min_nodes = 0;
  double join_timeout = kDefaultJoinTimeoutS;
  int heartbeat_ms = kDefaultHeartbeatMs;
  double connection_timeout = kDefaultConnectionTimeoutS;
  std::string plan_nodes;  // --print-topology: node capacities to deal the shards over
  // "mesh": nodes exchange sums and weights among themselves; "star": each node sends its whole
  // sum to the root and gets the whole weights from it.
  std::string node_reduce = "mesh";
  // Output
  std::string run_dir;  // empty: a new runs/<date-time>
  int eval_every = 200, eval_windows = 32, log_every = 0;
  int64_t fingerprint_every = 1;  // weights fingerprint in metrics.jsonl every N steps
  std::string progress = "auto";  // auto, line or plain
  int serve_port = -1;            // --serve: a live page of the run (apps/cmd_report.hpp)
  std::string serve_host = "127.0.0.1";
  int sample_tokens = 200;
  std::string prompt;
  SamplingOptions sampling;
  // Checkpoints and faults
  int64_t checkpoint_every = 200;
  int keep = 3;
  bool resume = false, overwrite = false;
  FaultPlan faults;
  SupervisionPolicy policy;
  // Actions
  bool print_topology = false, help = false;

  // The model and batch shape alone (the rest at the library's defaults). ConfigError.
  RunConfig shape() const;
  // The run's numbers, once the training tokens are known (for --epochs and the fingerprint).
  // Throws UsageError / ConfigError.
  RunConfig run_config(size_t train_tokens, const std::string& data_sha256, int vocab) const;
  // Checks what can be checked before the corpus is read. Throws UsageError / ConfigError.
  void validate() const;
  std::set<std::string> given;  // options set on the command line or in a config file
};

// Limits of the cluster's timeouts, in seconds.
constexpr double kMaxJoinTimeoutS = 1e6;
constexpr double kMaxConnectionTimeoutS = 3600;

// The options of a subtree of spheres (--spheres, --fanout, --placement, --threads, --recompute)
// and of its
// network links (--cluster-key, --heartbeat-ms, --connection-timeout): `cllm train` and `cllm
// node` both bind them here, one declaration each, so that their limits cannot diverge.
// `min_spheres`: 0 for the root (its nodes may do all the work), 1 for a node.
void sphere_options(cli::OptionTable& t, int& spheres, int& fanout, int& threads,
                    Placement& placement, bool& recompute, int min_spheres,
                    const std::string& spheres_help);
void link_options(cli::OptionTable& t, std::string& cluster_key, int& heartbeat_ms,
                  double& connection_timeout);

// --temperature, --top-k, --top-p: the final sample of `cllm train` and `cllm sample` alike.
void sampling_options(cli::OptionTable& t, SamplingOptions& s);

// The built-in default corpus: $CLLM_DEFAULT_CORPUS, else the one the build names.
std::string default_corpus_path();

// The option table of `cllm train`, bound to `s`.
cli::OptionTable train_options(TrainSettings& s);

// Parses the command line into settings (and `table`, for to_json / inherit). Throws UsageError.
TrainSettings parse_train_settings(const std::vector<std::string>& args);

// The settings of a run as recorded in its checkpoint (run["settings"]), or for a run of an
// earlier version, rebuilt from its checkpoint's numbers and config.json's "extra" block.
nlohmann::json recorded_settings(const nlohmann::json& checkpoint_run,
                                 const nlohmann::json& config_json);

// With --resume: what was not given again comes from the run's recorded settings (the numbers and
// the cadence; placement and output are free to change). Throws UsageError for a bad value.
void inherit_settings(TrainSettings& s, const nlohmann::json& recorded);

// --tls-cert, --tls-key, --tls-ca: the cluster's TLS files, bound by `cllm train` and `cllm node`
// alike (one declaration, the same help on both).
void tls_options(cli::OptionTable& t, std::string& cert, std::string& key, std::string& ca);

// Every recorded setting, for config.json and the checkpoints.
nlohmann::json settings_json(const TrainSettings& s);

}  // namespace cllm
