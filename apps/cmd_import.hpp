#pragma once
// `cllm import DIR --out CKPT`: a Hugging Face GPT-2 folder as a cllm checkpoint.
#include <string>
#include <vector>

namespace cllm {

int cmd_import(const std::vector<std::string>& args);

}  // namespace cllm
