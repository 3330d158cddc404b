#pragma once
// `cllm report`: one self-contained HTML file of a run (page, styles, script and data inline;
// nothing is loaded from anywhere, so it opens offline, from a USB stick, years later).
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "run/run_data.hpp"

namespace cllm::run {

// Bad input of `cllm report` / `cllm serve` (exit 2), e.g. a folder that is not a run.
struct RunFolderError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The page. `data` (the RunReader view) is embedded for a report; null for the live page, which
// fetches it from the server.
std::string render_page(const nlohmann::json& data, bool live);

// JSON text that is safe to put inside a <script> element (no "</script>" can appear) and never
// throws on bytes that are not UTF-8 (a byte-level model's sample may hold any bytes).
std::string dump_for_page(const nlohmann::json& j);

// The compare page of several runs (run/compare.hpp's data embedded; null for the live page,
// which fetches it from the server).
std::string render_compare_page(const nlohmann::json& data, bool live = false);

// Writes `page` to `out_path` through a temporary file and a rename; std::runtime_error when it
// cannot.
void write_page_file(const std::string& out_path, const std::string& page);

struct ReportResult {
  std::string path;
  size_t bytes = 0;
  int64_t rows = 0;
  std::vector<std::string> notices;  // "warning: ..." lines worth telling on the terminal
};

// Reads `run_dir` and writes the report to `out_path` (src/atomic_file.hpp). Throws
// RunFolderError (one line) when `run_dir` is no run folder or holds a file that is not a regular
// one, when `out_path` is one of the run's files or cannot be written (with the reason).
ReportResult write_report(const std::string& run_dir, const std::string& out_path,
                          const ViewOptions& opt = {});

}  // namespace cllm::run
