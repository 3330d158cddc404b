#pragma once
// `cllm report` and `cllm serve` (run/), and the live page of `cllm train --serve`.
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "run/live_server.hpp"

namespace cllm::cli {

int cmd_report(const std::vector<std::string>& args);
int cmd_serve(const std::vector<std::string>& args);

// Starts the live page of the run in `run_dir` inside the trainer and says where it is on
// `out`. Throws UsageError when it cannot listen.
std::unique_ptr<run::LiveServer> serve_training(const std::string& run_dir, const std::string& host,
                                                int port, std::ostream& out);

}  // namespace cllm::cli
