// `cllm diff RUN_A RUN_B`: option parsing and output only; the work is in run/compare.
#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "apps/cmd_compare.hpp"
#include "run/compare.hpp"
#include "run/options.hpp"
#include "run/run_folder.hpp"
#include "src/safe_text.hpp"

namespace cllm::cli {

namespace {

nlohmann::json read_config(const std::string& dir) {
  std::ifstream in(std::filesystem::path(dir) / "config.json", std::ios::binary);
  if (!in) return nullptr;
  return nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
}

}  // namespace

int cmd_diff(const std::vector<std::string>& args) {
  bool help = false;
  OptionTable t;
  t.add("--help,-h", "", "show this help", "", [&](const std::string&) { help = true; });
  t.parse(args);
  if (help) {
    std::cout << "usage: cllm diff RUN_A RUN_B\n\nCompares the weights of two runs step by step, "
                 "from the fingerprints in their metrics.jsonl (cllm train --fingerprint-every), "
                 "and prints 'identical through step N' or the first step where the weights "
                 "differ and which tensors. Runs of the same seed and settings are the same bits "
                 "for any sphere count, backend, faults or resume.\n\nexit status: 0 identical, 1 "
                 "they differ, 2 bad input (not a run folder, no fingerprints in common)\n"
              << t.help();
    return 0;
  }
  if (t.positionals.size() != 2)
    throw UsageError(fmt::format("cllm diff needs two run folders, got {} (see cllm diff --help)",
                                 t.positionals.size()));
  const std::string &a = t.positionals[0], &b = t.positionals[1];
  std::vector<run::FingerprintRow> fa, fb;
  try {
    fa = run::read_fingerprints(a);
    fb = run::read_fingerprints(b);
  } catch (const run::RunFolderError& e) {
    throw UsageError(e.what());
  }
  for (const auto& [dir, rows] : {std::make_pair(a, &fa), std::make_pair(b, &fb)})
    if (rows->empty())
      throw UsageError(fmt::format(
          "'{}' has no weights fingerprints in metrics.jsonl (a run of an earlier version, or "
          "no step done yet)",
          printable(dir, 200)));
  const run::RunDiff d = run::diff_runs(fa, fb, run::tensor_names(read_config(a)));
  if (d.compared == 0)
    throw UsageError(fmt::format(
        "the runs have no fingerprinted step in common ('{}' has steps {} to {}, '{}' {} to {})",
        printable(a, 200), fa.front().step, fa.back().step, printable(b, 200), fb.front().step,
        fb.back().step));
  std::cout << run::describe_diff(d, printable(a, 200), printable(b, 200));
  const nlohmann::json differ = run::settings_differences({read_config(a), read_config(b)});
  for (const auto& s : differ)
    std::cout << fmt::format("setting {}: {} vs {}\n", s["key"].get<std::string>(),
                             s["values"][0].dump(), s["values"][1].dump());
  return d.identical ? 0 : 1;
}

}  // namespace cllm::cli
