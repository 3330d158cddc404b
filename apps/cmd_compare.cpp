// `cllm report RUN_A RUN_B ... [--group-by SETTING] --out FILE`: the compare page. Option parsing
// is cmd_report's; this checks the output and writes the page (run/compare).
#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "apps/cmd_compare.hpp"
#include "run/compare.hpp"
#include "run/options.hpp"
#include "src/safe_text.hpp"

namespace cllm::cli {

namespace fs = std::filesystem;

namespace {

// The page must never replace what it reads: a run's own files, or anything that is not a
// regular file.
void check_output(const std::string& out, const std::vector<std::string>& dirs) {
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_regular_file(out, ec))
    throw UsageError(
        fmt::format("--out '{}' exists and is not a regular file", printable(out, 200)));
  const fs::path target = fs::weakly_canonical(out, ec);
  for (const auto& dir : dirs) {
    const fs::path run = fs::weakly_canonical(dir, ec);
    const fs::path rel = target.lexically_relative(run);
    if (rel.empty() || *rel.begin() == "..") continue;
    const std::string first = rel.begin()->string();
    if (first == "checkpoints" || first == "config.json" || first == "metrics.jsonl" ||
        first == "summary.json" || first == "spheres.json" || first == "sample.txt")
      throw UsageError(fmt::format("--out '{}' would replace a file of the run '{}'",
                                   printable(out, 200), printable(dir, 200)));
  }
}

}  // namespace

int report_compare(const std::vector<std::string>& dirs, const std::string& group_by,
                   const std::string& out) {
  if (dirs.empty())
    throw UsageError("cllm report needs at least one run folder (see cllm report --help)");
  if (out.empty())
    throw UsageError("cllm report of several runs (or with --group-by) needs --out FILE");
  check_output(out, dirs);
  run::CompareOptions o;
  o.group_by = group_by;
  run::ReportResult r;
  try {
    r = run::write_compare_report(dirs, out, o);
  } catch (const run::RunFolderError& e) {
    throw UsageError(e.what());
  }
  for (const auto& n : r.notices) std::cerr << "cllm report: note: " << printable(n) << "\n";
  std::cout << fmt::format("wrote {} ({:.1f} KB, {} runs)\n", r.path, double(r.bytes) / 1024.0,
                           r.rows);
  return 0;
}

std::unique_ptr<run::CompareSource> serve_source(const std::vector<std::string>& dirs,
                                                 const std::string& group_by) {
  run::CompareOptions o;
  o.group_by = group_by;
  std::error_code ec;
  if (dirs.size() > 1) {
    for (const auto& d : dirs)
      if (!fs::is_directory(d, ec))
        throw UsageError(fmt::format("there is no run folder '{}'", printable(d, 200)));
    return std::make_unique<run::CompareSource>(dirs, "", o);
  }
  if (dirs.size() != 1 || !fs::is_directory(dirs[0], ec) || run::is_run_folder(dirs[0]))
    return nullptr;
  // A folder of runs (runs/): its run subfolders, now and later.
  for (const auto& e : fs::directory_iterator(dirs[0], ec))
    if (e.is_directory(ec) && run::is_run_folder(e.path().string()))
      return std::make_unique<run::CompareSource>(std::vector<std::string>{}, dirs[0], o);
  return nullptr;  // an empty folder: a run that has not started yet
}

}  // namespace cllm::cli
