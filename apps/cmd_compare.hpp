#pragma once
// Several runs: `cllm diff`, `cllm runs` and `cllm report RUN_A RUN_B ...` (run/compare.hpp).
#include <memory>
#include <string>
#include <vector>

#include "run/compare.hpp"

namespace cllm::cli {

int cmd_diff(const std::vector<std::string>& args);
int cmd_runs(const std::vector<std::string>& args);
// `cllm report` of several runs (or with --group-by): the compare page to `out`.
int report_compare(const std::vector<std::string>& dirs, const std::string& group_by,
                   const std::string& out);
// What `cllm serve ARGS` shows when it is several runs: more than one folder, or one folder that
// is no run but holds runs (new ones appear as they start). Null for one run. UsageError for a
// folder that does not exist.
std::unique_ptr<run::CompareSource> serve_source(const std::vector<std::string>& dirs,
                                                 const std::string& group_by);

}  // namespace cllm::cli
