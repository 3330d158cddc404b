#pragma once
// The CLLM checkpoint: one safetensors file holding weights, AdamW moments, the exact-sum state,
// the model config, the tokenizer, step, seed and run settings, with checksums. See
// docs/checkpoint-format.md for its layout and how to open it from Python.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/aligned.hpp"
#include "src/config.hpp"
#include "src/safetensors.hpp"

namespace cllm {

// The format version this build writes; it reads this one and older.
constexpr int kCheckpointFormatVersion = 1;

struct Checkpoint {
  ModelConfig model;
  std::string tokenizer_kind = "byte",
              tokenizer_data;  // data: arbitrary bytes (base64 in the file)
  uint64_t step = 0;           // optimizer steps completed
  uint64_t seed = 0;
  nlohmann::json
      run;  // run settings that must match on resume; opaque here (a JSON string in the file)
  AlignedVector<float> weights, adam_m, adam_v;  // ParamLayout(model).total() each; padding is zero
  std::vector<int32_t> grad_scale_exp;           // empty, or one per layout tensor
  std::string source_path;                       // set by load_checkpoint; used in messages
};

// Writes atomically (see write_safetensors); CheckpointError on a bad Checkpoint or an I/O failure.
void save_checkpoint(const std::string& path, const Checkpoint& ck);

// Reads and verifies: format and version, metadata and payload checksums, the model config, and
// every tensor present with the shape that config needs. Each failure: CheckpointError naming path.
// `weights_only`: everything but the AdamW moments (adam_m and adam_v stay empty), all checks the
// same; for what only reads the model (sample, export): the moments are 2/3 of a file.
Checkpoint load_checkpoint(const std::string& path, bool weights_only = false);

// Throws CheckpointError when ck was made for another model shape or tokenizer kind:
// "checkpoint 'x' has model d 64, ... but this run uses d 128, ...".
void require_compatible(const Checkpoint& ck, const ModelConfig& expected,
                        const std::string& tokenizer_kind);

// "ckpt-00000042.safetensors"
std::string checkpoint_name(uint64_t step);

// Paths (dir joined with the name) of the files in dir named "ckpt-<8 or more digits>.safetensors",
// by step ascending; temporaries and other files are ignored. A missing dir gives an empty list.
std::vector<std::string> list_checkpoints(const std::string& dir);

// The step in a checkpoint's file name ("…/ckpt-00000042.safetensors" -> 42); CheckpointError for
// a name that is not a checkpoint's.
uint64_t checkpoint_step(const std::string& path);

// Reads back the file save_checkpoint(path, ck) wrote and throws CheckpointError unless it holds
// `ck` exactly: every tensor's bytes compared with ck's, the header through load_checkpoint's
// checks (format, version, metadata checksum, model), the metadata equal to what save_checkpoint
// writes for ck. Costs a read of the file and a compare, without hashing the data again.
void verify_checkpoint_file(const std::string& path, const Checkpoint& ck);

// Writes `ck` to `path`, reads it back to verify it (verify_checkpoint_file), and only then
// deletes checkpoints in its folder that are OLDER than it beyond `keep` (a newer file, say a
// damaged one from an earlier life of the run, is never a reason to delete a good one, nor ours
// to delete). Throws CheckpointError. `before_verify`, when given, runs between the write and the
// read-back (tests: a file damaged there must fail the read-back).
void write_checkpoint_and_prune(const Checkpoint& ck, const std::string& path, int keep,
                                const std::function<void()>& before_verify = {});

// What became of one checkpoint handed to a sink.
struct CheckpointOutcome {
  std::string path;
  std::string error;  // empty: written, verified, and older ones pruned
};

// Where checkpoints go. The training loop hands over a complete snapshot and goes on training;
// the sink writes it (write_checkpoint_and_prune).
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

// write_checkpoint_and_prune, with any failure as the outcome's error.
CheckpointOutcome write_checkpoint_outcome(const Checkpoint& ck, const std::string& path, int keep);

}  // namespace cllm
