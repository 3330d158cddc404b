#pragma once
// The training session: the root's loop, shared by every backend. It owns the TrainState
// (weights, AdamW, exact-sum grid), asks the backend for each step's exact total, applies it,
// evaluates, writes metrics, checkpoints and the summary, and prints progress.
#include <cstdint>
#include <iosfwd>
#include <string>

#include <nlohmann/json.hpp>

#include "src/backend.hpp"
#include "src/checkpoint.hpp"
#include "src/corpus.hpp"
#include "src/generate.hpp"
#include "src/tokenizer.hpp"
#include "src/training.hpp"

namespace cllm {

struct SessionOptions {
  std::string run_dir;        // required
  int eval_every = 50;        // steps between validation evaluations (0 = only at the end)
  int eval_windows = 32;      // validation windows per evaluation (0 = all)
  int log_every = 0;          // plain-output progress lines every N steps (0 = automatic)
  int progress = -1;          // 1 = in-place line, 0 = plain lines, -1 = auto (terminal or not)
  int sample_tokens = 200;    // generated at the end (0 = none)
  std::string sample_prompt;  // empty = start of a line
  SamplingOptions sampling;
  int64_t checkpoint_every = 0;  // steps between checkpoints (0 = only the final one)
  int keep = 3;                  // checkpoints kept
  bool resume = false;           // continue from the newest valid checkpoint in run_dir
  bool overwrite = false;        // a new run may replace a previous run's files in run_dir
  nlohmann::json extra_config;   // backend/topology settings, recorded in config.json
};

struct SessionResult {
  int64_t steps_done = 0;
  double final_loss = 0, val_loss = -1, val_bpb = -1;
  std::string weights_sha256;
  double tokens_per_s = 0, step_ms_median = 0;
  int exit_code = 0;
  std::string stop_reason;  // empty when the run completed
};

// What became of one submitted checkpoint.
struct CheckpointOutcome {
  std::string path;
  std::string error;  // empty: written, verified, and older ones pruned
};

// Where checkpoints go. The session hands over a complete snapshot and goes on training; the
// sink writes it (atomically) and then prunes older checkpoints beyond `keep`.
class CheckpointSink {
 public:
  virtual ~CheckpointSink() = default;
  virtual void submit(std::shared_ptr<const Checkpoint> snapshot, const std::string& path,
                      int keep) = 0;
  // Outcomes of checkpoints finished so far, without waiting (each is reported once).
  virtual std::vector<CheckpointOutcome> poll() = 0;
  // Blocks until every submitted checkpoint is done; returns the outcomes not yet reported.
  virtual std::vector<CheckpointOutcome> flush() = 0;
};

// Writes in the caller's thread (tests, tools).
class SyncCheckpointSink final : public CheckpointSink {
 public:
  void submit(std::shared_ptr<const Checkpoint> snapshot, const std::string& path,
              int keep) override;
  std::vector<CheckpointOutcome> poll() override { return flush(); }
  std::vector<CheckpointOutcome> flush() override;

 private:
  std::vector<CheckpointOutcome> done_;
};

// write_checkpoint_and_prune (below), with any failure as the outcome's error.
CheckpointOutcome write_checkpoint_outcome(const Checkpoint& ck, const std::string& path, int keep);

// Writes `ck` to `path`, verifies it, and then deletes the oldest checkpoints in its folder that
// are older than ck beyond `keep` (newer files are never touched). Throws CheckpointError.
void write_checkpoint_and_prune(const Checkpoint& ck, const std::string& path, int keep);

// Requests a clean stop after the current step (signal-safe: only sets a flag).
void request_stop();
bool stop_requested();

// Progress goes to `out`, problems to `err`. With `sink` null, checkpoints are written
// synchronously.
SessionResult run_session(const RunConfig& cfg, const Corpus& corpus, const Tokenizer& tok,
                          Backend& backend, const SessionOptions& opt, std::ostream& out,
                          std::ostream& err, CheckpointSink* sink = nullptr);

// Peak resident set size of this process in MiB.
double peak_rss_mb();

}  // namespace cllm
