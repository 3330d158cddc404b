#pragma once
// `cllm node --join HOST:PORT`: a worker process joining a training run on another machine.
#include <string>
#include <vector>

namespace cllm {

int cmd_node(const std::vector<std::string>& args);

}  // namespace cllm
