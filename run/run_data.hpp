#pragma once
// Reading a run folder for people: the rows of metrics.jsonl and the run's JSON files, turned
// into the data of the report page (downsampled for drawing, exact figures kept). Used by
// `cllm report` (once) and by the live server (again and again, reading only what is new).
//
// It only reads. Whatever is in the folder (a missing or half-written file, a torn last line,
// a folder that disappeared) becomes a notice on the page, never an exception.
#include <sys/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace cllm::run {

// The embedded page assets (page.html, page.css, page.js): generated at build time from
// run/assets/ by cmake/embed_assets.cmake. Empty for an unknown name.
std::string_view asset(std::string_view name);

// One row of metrics.jsonl. Missing numbers are NaN (older runs lack some keys).
struct StepRow {
  int64_t step = 0;
  double loss, lr, grad_norm, tokens_per_s, step_ms, compute_ms, fold_ms, reduce_ms;
  double val_loss, val_bpb;
  double cpu_s, rss_mb;  // the process's CPU time so far and resident memory (newer runs)
  // Cluster runs: the nodes' CPU time so far, summed, and the largest node's resident memory, as
  // they answered in the step (node_usage); NaN without nodes.
  double nodes_cpu_s, nodes_rss_mb;
  int32_t spheres_computing = 0;  // spheres that computed shards in the step; 0 = not recorded
  int32_t restarts = 0, deadline_kills = 0, subtree_restarts = 0;  // in this step
  int64_t resumed_from = -1;                                       // first step after a resume
  std::string checkpoint;                                          // written after this step
};

// The largest run files read (checked before reading; a larger one becomes a notice): about ten
// million rows of metrics.jsonl, and spheres.json of a million spheres.
constexpr uint64_t kMaxMetricsBytes = uint64_t(4) << 30;
constexpr uint64_t kMaxRunJsonBytes = uint64_t(256) << 20;

// The files of a run folder that the report and the live page read.
std::vector<std::string> run_files_read(const std::string& dir);

// One line naming the first of those files that exists but is not a regular file, or is larger
// than its limit (a FIFO would block every reader); "" when there is none. Checked up front by
// `cllm report` and `cllm serve`.
std::string unreadable_run_file(const std::string& dir);

// Where the computing spheres' time went, summed over rows: compute, fold, reduce, and wait (the
// time they were not doing any of these while the step lasted: min(spheres computing, `threads`)
// x step time minus the rest; threads 0 = unknown). Shared by the run page and the compare page.
struct TimeSplit {
  double compute = 0, fold = 0, reduce = 0, wait = 0;
  bool wait_known = false;  // some row had the spheres computing and the step time

  void add(const StepRow& q, int threads);
  double total() const { return compute + fold + reduce + wait; }
};

// Now, as "2026-12-07 11:24:12 UTC" (the pages' "generated at").
std::string utc_now();

// FNV-1a over 64-bit words, a byte at a time: the cheap version stamps of a run folder and of a
// set of runs (a change of size or time changes it; not a checksum of the contents).
struct Fnv1a {
  uint64_t h = 1469598103934665603ULL;
  void mix(uint64_t x) {
    for (int i = 0; i < 8; ++i) h = (h ^ ((x >> (8 * i)) & 0xff)) * 1099511628211ULL;
  }
};

// Parses one line of metrics.jsonl; false when it is not a row (not JSON, no "step").
bool parse_row(std::string_view line, StepRow& row);

struct ViewOptions {
  int max_points = 2000;  // per drawn series: more rows are min/max-decimated to about this many
  int max_events = 1000;  // more fault events are merged per step bucket
  bool live = false;      // the page polls for new data
};

// A run folder, read incrementally: refresh() reads the rows appended to metrics.jsonl since
// the previous call (the whole file again when it was replaced or shrank, as a resume does)
// and re-reads the other files only when their size or time changed.
class RunReader {
 public:
  explicit RunReader(std::string dir);

  void refresh();
  // The page's data: see the top of run/assets/page.js for its shape.
  nlohmann::json view(const ViewOptions& opt = {}) const;

  const std::vector<StepRow>& rows() const { return rows_; }
  bool folder_exists() const { return folder_exists_; }
  // config.json or metrics.jsonl was found at least once.
  bool looks_like_run() const { return !config_.is_null() || metrics_seen_; }
  const std::string& dir() const { return dir_; }
  // Changes whenever anything that view() shows changed (a cheap "has it changed?" for pollers).
  uint64_t version() const;

 private:
  struct FileState {
    bool present = false;
    int64_t size = -1;
    int64_t mtime_ns = -1;
    std::string error;  // why it could not be read, when it could not
  };
  void read_metrics();
  // Re-reads `name` when it changed; returns true when `out` was replaced.
  bool read_json_file(const char* name, FileState& st, nlohmann::json& out);

  // Parts of view().
  std::string shown_dir() const;  // the folder as the page names it (absolute when possible)
  bool summary_done() const;      // summary.json covers the last step read
  std::string stop_reason() const;
  int64_t steps_total() const;    // the run's planned steps (config.json); 0 = unknown
  int scheduler_threads() const;  // settings.threads (config.json); 0 = unknown
  nlohmann::json notices_view(const std::string& shown) const;
  nlohmann::json status_view(const ViewOptions& opt) const;
  nlohmann::json events_view(const ViewOptions& opt, int64_t& width) const;

  std::string dir_;
  bool folder_exists_ = false;
  bool ever_existed_ = false;

  // metrics.jsonl: rows read so far and where the next read starts.
  std::vector<StepRow> rows_;
  bool metrics_seen_ = false;
  dev_t metrics_dev_ = 0;
  ino_t metrics_ino_ = 0;
  int64_t metrics_offset_ = 0;     // bytes consumed (complete lines)
  int64_t metrics_tail_ = 0;       // bytes after the last newline (an incomplete last line)
  int64_t metrics_bad_lines_ = 0;  // lines that are not rows
  int64_t metrics_first_bad_ = 0;  // 1-based number of the first such line
  int64_t metrics_lines_ = 0;
  int64_t metrics_mtime_ns_ = 0;
  std::string metrics_error_;

  FileState config_st_, summary_st_, spheres_st_, sample_st_;
  nlohmann::json config_, summary_, spheres_;
  nlohmann::json spheres_view_;  // spheres_ as the page gets it
  std::string sample_;
};

// Rounds to 6 significant digits (shorter JSON; the page shows at most 5).
double round6(double x);

// The rows of a series to draw: every row i < n with a finite get(i) when there are at most
// `max_points`, else those rows cut into max_points/2 equal buckets and, of each bucket, the row
// with the smallest and the row with the largest value (in order). Spikes and dips survive; the
// drawn line looks the same as the full one at any width the pages use.
template <class Get>
std::vector<size_t> decimate_indices(size_t n_rows, Get get, int max_points) {
  std::vector<size_t> idx, out;
  idx.reserve(n_rows);
  for (size_t i = 0; i < n_rows; ++i)
    if (std::isfinite(get(i))) idx.push_back(i);
  const size_t n = idx.size();
  const size_t cap = size_t(std::max(2, max_points));
  if (n <= cap) return idx;
  const size_t buckets = cap / 2;
  out.reserve(cap);
  for (size_t b = 0; b < buckets; ++b) {
    const size_t lo = b * n / buckets, hi = (b + 1) * n / buckets;
    if (lo >= hi) continue;
    size_t imin = lo, imax = lo;
    double vmin = get(idx[lo]), vmax = vmin;
    for (size_t k = lo + 1; k < hi; ++k) {
      const double v = get(idx[k]);
      if (v < vmin) vmin = v, imin = k;
      if (v > vmax) vmax = v, imax = k;
    }
    out.push_back(idx[std::min(imin, imax)]);
    if (imin != imax) out.push_back(idx[std::max(imin, imax)]);
  }
  return out;
}

}  // namespace cllm::run
