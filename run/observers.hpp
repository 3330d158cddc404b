#pragma once
// Observers of the training loop's step records: the metrics file, the progress line, the fault
// log, and the checkpoint cadence.
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "run/run_folder.hpp"
#include "src/params.hpp"
#include "src/tokenizer.hpp"
#include "src/train_loop.hpp"

namespace cllm {

// One metrics.jsonl row: step, loss, lr, grad_norm, tokens_per_s, step_ms, compute_ms, fold_ms,
// reduce_ms, wait_ms, spheres_computing; val_loss and val_bpb on evaluation steps; faults (with
// their events) when any were handled; nodes, spheres, network_ms, bytes and node_usage (each
// node's {node, cpu_s, rss_mb}) with remote nodes.
// MetricsLog adds the rest (see there).
nlohmann::json metrics_row(const StepRecord& r);

// Where MetricsLog finds the weights after a step, for their fingerprint (src/step_fingerprint).
struct WeightsSource {
  const ParamLayout* layout = nullptr;  // null: no fingerprints
  std::function<const float*()> weights;
  int64_t every = 1;  // fingerprint every N steps (and always the last step)
};

// Writes metrics_row plus: weights_fp and tensors_fp on fingerprinted steps; cpu_s (the
// process's CPU time since it started) and rss_mb (its resident memory now); checkpoint on
// steps that hand one to the writer; resumed_from on the first row after --resume.
class MetricsLog final : public StepObserver {
 public:
  // first_step: steps done before this session (resumed from); checkpoint_every as the run's.
  MetricsLog(AppendFile file, int64_t first_step, int64_t checkpoint_every,
             WeightsSource weights = {})
      : file_(std::move(file)),
        first_step_(first_step),
        checkpoint_every_(checkpoint_every),
        weights_(std::move(weights)) {}
  void on_step(const StepRecord& r) override;  // FileError when the row cannot be written

 private:
  AppendFile file_;
  int64_t first_step_, checkpoint_every_;
  WeightsSource weights_;
};

// spheres.json kept fresh during the run for the live page: rewritten at most once a second, and
// never for more than about 1% of the time (the interval grows with what a write costs).
class SpheresSnapshot final : public StepObserver {
 public:
  SpheresSnapshot(const RunFolder& folder, Backend& backend) : folder_(folder), backend_(backend) {}
  void on_step(const StepRecord& r) override;

 private:
  const RunFolder& folder_;
  Backend& backend_;
  double written_at_ = -1, interval_s_ = 1.0;
};

// spheres.json's entries.
nlohmann::json spheres_json(const std::vector<SphereStats>& stats);

// The progress line: updated in place on a terminal, else a plain line every `log_every` steps
// (and the first and last).
class ProgressLine final : public StepObserver {
 public:
  ProgressLine(std::ostream& out, bool in_place, int64_t log_every, int64_t first_step);
  ~ProgressLine() override;  // ends an in-place line
  void on_step(const StepRecord& r) override;

 private:
  std::ostream& out_;
  bool in_place_;
  int64_t log_every_, first_step_;
  double start_s_;
  double last_val_ = -1;
  bool wrote_ = false;
};

// What happens to the tree, as it happens: the first fault of each distinct reason gets one line
// on `err` (a deterministic bug shows what it is instead of only "gave up"), every node that
// joins, leaves or is lost gets one; all are counted, with the traffic to and from the nodes.
class EventLog final : public StepObserver {
 public:
  explicit EventLog(std::ostream& err) : err_(err) {}
  void on_step(const StepRecord& r) override;
  void add(const FaultCounts& f);
  const FaultCounts& totals() const { return totals_; }  // counters, no events
  const std::map<std::string, int64_t>& reasons() const { return reasons_; }
  int64_t bytes_sent() const { return bytes_sent_; }
  int64_t bytes_received() const { return bytes_received_; }
  const std::vector<double>& network_ms() const { return network_ms_; }  // per step with nodes

 private:
  std::ostream& err_;
  FaultCounts totals_;
  std::map<std::string, int64_t> reasons_;
  int64_t bytes_sent_ = 0, bytes_received_ = 0;
  std::vector<double> network_ms_;
};

// The checkpoints' snapshots of one run. A snapshot whose writer is done with it (the sink holds
// it no more) lends its buffers to the next one: copying into pages already mapped costs the
// training thread a tenth of the CPU of fresh ones (gpt2: 0.1 s against 0.8 s, and seconds of
// page faults and reclaim on a busy machine), for keeping one snapshot's memory between
// checkpoints. The tokenizer's bytes are the same all run: serialised once.
class CheckpointSnapshots {
 public:
  // `settings`: what --resume inherits (the checkpoint's run["settings"]).
  std::shared_ptr<const Checkpoint> take(const TrainState& st, const Tokenizer& tok,
                                         const nlohmann::json& settings);

 private:
  std::shared_ptr<Checkpoint> last_;
  std::optional<std::string> tokenizer_data_;
};

// A snapshot into the checkpoint sink every `every` steps (not at the last step: the session
// writes the final one), and the outcomes reported as they come.
class CheckpointCadence final : public StepObserver {
 public:
  using Snapshot = std::function<std::shared_ptr<const Checkpoint>()>;
  CheckpointCadence(const RunFolder& folder, CheckpointSink& sink, Snapshot snapshot, int64_t every,
                    int keep, std::ostream& err);
  void on_step(const StepRecord& r) override;
  // Submits the final checkpoint of `step` and waits for every outcome.
  void finish(int64_t step);
  const std::string& newest_good() const { return newest_good_; }
  void set_newest_good(std::string path) { newest_good_ = std::move(path); }
  bool failed() const { return failed_; }

 private:
  void report(const std::vector<CheckpointOutcome>& outcomes);
  const RunFolder& folder_;
  CheckpointSink& sink_;
  Snapshot snapshot_;
  int64_t every_;
  int keep_;
  std::ostream& err_;
  std::string newest_good_;
  bool failed_ = false;
};

}  // namespace cllm
