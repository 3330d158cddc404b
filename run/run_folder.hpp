#pragma once
// A run folder: config.json, metrics.jsonl, spheres.json, summary.json, sample.txt and
// checkpoints/. It is locked for the life of the object (two processes writing one folder would
// interleave metrics and prune each other's checkpoints), a new run never replaces what an
// earlier run left unless asked to, and every file is written so that nothing already on disk is
// lost (src/atomic_file.hpp).
#include <cstdint>
#include <iosfwd>
#include <string>

#include <nlohmann/json.hpp>

#include "src/atomic_file.hpp"
#include "src/checkpoint.hpp"

namespace cllm {

class RunFolder {
 public:
  // A new run in `dir` (empty: a new runs/<date-time>). A folder holding a previous run's files
  // is refused (ConfigError) unless `overwrite`, which removes them first.
  static RunFolder create(const std::string& dir, bool overwrite);
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
  // `err` and left in place. CheckpointError when none is usable.
  Checkpoint newest_valid_checkpoint(std::ostream& err) const;

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
