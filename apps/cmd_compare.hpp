#pragma once
// Several runs: `cllm diff`, `cllm runs` and `cllm report RUN_A RUN_B ...` (run/compare.hpp).
#include <string>
#include <vector>

namespace cllm::cli {

int cmd_diff(const std::vector<std::string>& args);
int cmd_runs(const std::vector<std::string>& args);
// `cllm report` of several runs (or with --group-by): the compare page to `out`.
int report_compare(const std::vector<std::string>& dirs, const std::string& group_by,
                   const std::string& out);

}  // namespace cllm::cli
