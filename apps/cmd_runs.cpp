// `cllm runs [DIR] [--json]`: option parsing and output only; the work is in run/compare.
#include <iostream>

#include <fmt/format.h>

#include "apps/cmd_compare.hpp"
#include "run/compare.hpp"
#include "run/options.hpp"
#include "src/safe_text.hpp"

namespace cllm::cli {

namespace {

std::string shown(const nlohmann::json& v, const char* fmt_spec = "{}") {
  if (v.is_number()) return fmt::format(fmt::runtime(fmt_spec), v.get<double>());
  if (v.is_string()) return printable(v.get<std::string>(), 60);
  return "-";
}

}  // namespace

int cmd_runs(const std::vector<std::string>& args) {
  bool help = false, as_json = false;
  OptionTable t;
  t.add("--json", "", "print the list as JSON", "", [&](const std::string&) { as_json = true; });
  t.add("--help,-h", "", "show this help", "", [&](const std::string&) { help = true; });
  t.parse(args);
  if (help) {
    std::cout << "usage: cllm runs [DIR] [--json]\n\nLists the runs in DIR (default: runs): date, "
                 "status, steps, final loss, tokens/s, tokenizer and model, from each run's "
                 "config.json and summary.json. DIR may also be one run folder.\n"
              << t.help();
    return 0;
  }
  if (t.positionals.size() > 1)
    throw UsageError(fmt::format("unexpected argument '{}' (cllm runs takes one folder)",
                                 printable(t.positionals[1], 60)));
  const std::string dir = t.positionals.empty() ? "runs" : t.positionals[0];
  nlohmann::json runs;
  try {
    runs = run::list_runs(dir);
  } catch (const run::RunFolderError& e) {
    throw UsageError(e.what());
  }
  if (as_json) {
    std::cout << runs.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  if (runs.empty()) {
    std::cout << fmt::format("no runs in '{}'\n", printable(dir, 200));
    return 0;
  }
  std::cout << fmt::format("{:<17} {:<10} {:>13} {:>10} {:>10}  {:<10} {:<28} {}\n", "date",
                           "status", "steps", "final loss", "tokens/s", "tokenizer", "model",
                           "run");
  for (const auto& r : runs) {
    const std::string steps =
        r["planned_steps"].is_number()
            ? fmt::format("{}/{}", r["steps"].get<int64_t>(), r["planned_steps"].get<int64_t>())
            : fmt::format("{}", r["steps"].get<int64_t>());
    std::cout << fmt::format("{:<17} {:<10} {:>13} {:>10} {:>10}  {:<10} {:<28} {}\n",
                             shown(r["date"]), shown(r["status"]), steps,
                             shown(r["final_loss"], "{:.4f}"), shown(r["tokens_per_s"], "{:.0f}"),
                             shown(r["tokenizer"]), shown(r["model"]), shown(r["name"]));
  }
  return 0;
}

}  // namespace cllm::cli
