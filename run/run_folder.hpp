#pragma once
// A run folder: config.json, metrics.jsonl, spheres.json, summary.json, sample.txt and
// checkpoints/. It is locked for the life of the object (two processes writing one folder would
// interleave metrics and prune each other's checkpoints), a new run never replaces what an
// earlier run left unless asked to, and every file is written so that nothing already on disk is
// lost (src/atomic_file.hpp).
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/atomic_file.hpp"
#include "src/checkpoint.hpp"

namespace cllm {

// Refuses, with ConfigError naming `option`, an output path that would replace one of the
// command's `inputs` (the same file by device and inode, whatever links or spelling lead there),
// that lies inside an input folder (a corpus folder would read it next time), or that is an
// existing file of a run folder (config.json, metrics.jsonl, summary.json, spheres.json,
// sample.txt, .lock, a checkpoint): those belong to the run that wrote them.
void refuse_output_over_inputs(const std::string& out, const std::vector<std::string>& inputs,
                               const std::string& option);

// Throws CheckpointError when `ck` is not the checkpoint of the run whose config.json is `config`
// (see RunFolder::checkpoint_to_resume); a config.json without a "run" block is not compared.
void check_checkpoint_of_run(const Checkpoint& ck, const nlohmann::json& config);

// What config.json records of a run's tokenizer, to recognise its checkpoints.
nlohmann::json tokenizer_record(const std::string& kind, const std::string& data);

class RunFolder {
 public:
  // A new run in `dir` (empty: a new runs/<date-time>). A folder holding a previous run's files
  // is refused (ConfigError) unless `overwrite`, which removes them first.
  static RunFolder create(const std::string& dir, bool overwrite);
  // Refuses (ConfigError, as create would) a --run-dir that create would refuse, creating
  // nothing: checked before a long wait (for --min-nodes), so nodes are not kept for nothing.
  static void check_new(const std::string& dir, bool overwrite);
  // An existing run to resume: the folder and its checkpoints/ must exist. CheckpointError.
  static RunFolder open(const std::string& dir);

  ~RunFolder();
  RunFolder(RunFolder&& o) noexcept;
  RunFolder& operator=(RunFolder&&) = delete;
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;

  const std::string& dir() const { return dir_; }
  std::string path(const std::string& name) const;  // dir/name
  std::string checkpoint_path(int64_t step) const;  // dir/checkpoints/ckpt-<step>.safetensors

  // The newest checkpoint that verifies; a corrupt, truncated or unreadable newer one is named on
  // `err` and left in place. CheckpointError (one line) when none is usable.
  Checkpoint newest_valid_checkpoint(std::ostream& err) const;
  // The checkpoint --resume continues: the newest valid one, refused (CheckpointError naming what
  // differs) when it is not this run's: its file name against its step, and its model, tokenizer,
  // data hash and seed against config.json. Nothing in the folder is written before this.
  Checkpoint checkpoint_to_resume(std::ostream& err) const;

  // config.json as it is, or an empty object when it is missing or unreadable.
  nlohmann::json read_json(const std::string& name) const;
  // Replaces dir/name by `text` once it is complete on disk. FileError.
  void write(const std::string& name, const std::string& text) const;
  // metrics.jsonl holding the rows of steps 1..done (a resumed run continues the file; the
  // cut-back copy replaces it atomically). FileError.
  AppendFile open_metrics(int64_t done) const;

 private:
  RunFolder(std::string dir, int lock_fd);
  std::string dir_;
  int lock_fd_ = -1;
};

}  // namespace cllm
