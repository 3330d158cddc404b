#pragma once
// One training session in a run folder: restore or start the state, record the settings, run the
// training loop with its observers (metrics, progress, faults, checkpoints), and leave behind the
// final checkpoint, spheres.json, summary.json and a sample, whatever stopped the loop.
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

#include "run/run_folder.hpp"
#include "run/settings.hpp"
#include "src/backend.hpp"
#include "src/checkpoint.hpp"
#include "src/corpus.hpp"
#include "src/tokenizer.hpp"
#include "src/train_loop.hpp"

namespace cllm {

struct SessionResult {
  int64_t steps_done = 0;
  double final_loss = 0, val_loss = -1, val_bpb = -1;
  std::string weights_sha256;
  double tokens_per_s = 0, step_ms_median = 0;
  int exit_code = 0;
  std::string stop_reason;  // empty when the run completed
};

struct Session {
  const TrainSettings& settings;
  const RunConfig& run;
  const Corpus& corpus;
  const Tokenizer& tok;
  Backend& backend;
  const RunFolder& folder;
  CheckpointSink& sink;
  const StopToken& stop;
  std::ostream& out;  // progress and the sample
  std::ostream& err;  // problems
  // A new run's starting weights (cllm train --init-from; ParamLayout(run.model) order), instead
  // of the seed's; the optimizer starts fresh. Ignored when resuming.
  const AlignedVector<float>* init_weights = nullptr;
};

// `resume_from`: the checkpoint to continue (RunFolder::newest_valid_checkpoint); its settings
// must match `s.run` (CheckpointError listing the differences). Throws FileError when config.json
// cannot be written; every later failure ends up in the result instead.
SessionResult run_session(const Session& s, const std::optional<Checkpoint>& resume_from);

}  // namespace cllm
