#pragma once
// Several runs: `cllm diff`, `cllm runs` and `cllm report RUN_A RUN_B ...` (run/compare.hpp).
#include <string>
#include <vector>

namespace cllm::cli {

int cmd_diff(const std::vector<std::string>& args);
int cmd_runs(const std::vector<std::string>& args);

}  // namespace cllm::cli
