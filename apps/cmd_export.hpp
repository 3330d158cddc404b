#pragma once
// `cllm export CHECKPOINT|RUN_DIR --format hf|gguf --out PATH`.
#include <string>
#include <vector>

namespace cllm {

int cmd_export(const std::vector<std::string>& args);

}  // namespace cllm
