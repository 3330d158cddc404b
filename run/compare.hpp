#pragma once
// Several runs side by side: where two runs' weights part (from the fingerprints in
// metrics.jsonl), which settings differ, the list of the runs of a folder, and the data of the
// compare page (`cllm diff`, `cllm runs`, `cllm report RUN_A RUN_B ...`).
//
// It only reads run folders. A folder that is no run is bad input (RunFolderError); a run
// without fingerprints (older versions) can still be listed and drawn, not diffed.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "run/report.hpp"

namespace cllm::run {

// A fingerprinted row of metrics.jsonl (weights_fp, tensors_fp; see src/step_fingerprint.hpp).
struct FingerprintRow {
  int64_t step = 0;
  std::string weights, tensors;
};

// The fingerprinted rows of `run_dir`'s metrics.jsonl, by step. Rows without a fingerprint and
// lines that are not rows are skipped. Throws RunFolderError when the folder or the file is
// missing.
std::vector<FingerprintRow> read_fingerprints(const std::string& run_dir);

// The tensor names of the model in config.json (the fingerprint's order); empty when unknown.
std::vector<std::string> tensor_names(const nlohmann::json& config);

struct RunDiff {
  bool identical = false;
  int64_t compared = 0;      // steps fingerprinted in both
  int64_t through = 0;       // the last such step with the same weights (0: none)
  int64_t first_differ = 0;  // the first such step where they differ (0: none)
  // The tensors that differ at first_differ (names, or "tensor K" when the model is unknown);
  // empty when the two fingerprints have different numbers of tensors (other models).
  std::vector<std::string> tensors;
  bool other_models = false;
  int64_t last_a = 0, last_b = 0;  // the last fingerprinted step of each run
};

// Compares two runs' fingerprints at the steps both have. `names`: the tensor names of `a`.
RunDiff diff_runs(const std::vector<FingerprintRow>& a, const std::vector<FingerprintRow>& b,
                  const std::vector<std::string>& names);

// What `cllm diff` prints: "identical through step N ..." or "first difference at step S ...".
std::string describe_diff(const RunDiff& d, const std::string& name_a, const std::string& name_b);

// The settings (config.json "settings", plus the backend and sphere count) whose values are not
// the same in every run: [{key, values: [one per run, null where absent]}], sorted by key.
// run-dir is left out (it always differs).
nlohmann::json settings_differences(const std::vector<nlohmann::json>& configs);

// One line of `cllm runs`: {name, dir, date (UTC, config.json's time), status (finished,
// stopped, incomplete), stop_reason, steps (the last row's), planned_steps, final_loss,
// tokens_per_s (median, summary.json), tokenizer, model, backend, spheres}. Reads config.json,
// summary.json and only the end of metrics.jsonl.
nlohmann::json run_entry(const std::string& run_dir);

// The runs of `dir`: `dir` itself when it is a run folder, else its subfolders that are (sorted
// by date, then name). Throws RunFolderError when `dir` is no folder.
nlohmann::json list_runs(const std::string& dir);

// A folder with config.json or metrics.jsonl.
bool is_run_folder(const std::string& dir);

struct CompareOptions {
  std::string group_by;  // a setting (config.json "settings" key, or backend / spheres); "" = none
  int max_points = 0;    // per run and series; 0 = from the number of runs
};

// The compare page's data: see the top of run/assets/compare.js for its shape. Throws
// RunFolderError for a folder that is no run, or a --group-by setting no run has.
nlohmann::json compare_view(const std::vector<std::string>& run_dirs, const CompareOptions& o);

// The runs of a live compare page (`cllm serve RUN_A RUN_B ...` or `cllm serve FOLDER_OF_RUNS`),
// read again when they change. With a parent folder, its run subfolders are listed again on
// every refresh, so that new runs appear. A run folder that disappears becomes a notice.
class CompareSource {
 public:
  // `dirs`: the runs; or `parent`: a folder of runs (then `dirs` is ignored).
  CompareSource(std::vector<std::string> dirs, std::string parent, CompareOptions o);
  // Looks at the runs' files (sizes and times only); returns a version that changes whenever
  // the page's data would.
  uint64_t refresh();
  // The page's data for the runs as they are now (compare_view, with notices for gone runs).
  nlohmann::json view() const;

 private:
  std::vector<std::string> dirs_;
  std::string parent_;
  CompareOptions opt_;
};

// Reads the runs and writes the compare page to `out_path` (through a temporary and a rename).
ReportResult write_compare_report(const std::vector<std::string>& run_dirs,
                                  const std::string& out_path, const CompareOptions& o);

}  // namespace cllm::run
