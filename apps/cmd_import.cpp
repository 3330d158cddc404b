// `cllm import DIR --out CKPT [--tokenizer SPEC]`: thin wiring over src/hf_import.
#include "apps/cmd_import.hpp"

#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "run/options.hpp"
#include "src/checkpoint.hpp"
#include "src/hf_import.hpp"
#include "src/params.hpp"
#include "src/safe_text.hpp"

namespace cllm {

using cli::OptionTable;
using cli::UsageError;

int cmd_import(const std::vector<std::string>& args) {
  std::string out, tokenizer;
  bool help = false;
  OptionTable t;
  t.add("--out", "FILE", "the checkpoint to write (.safetensors); it must not exist", "",
        [&](auto& v) { out = v; });
  t.add("--tokenizer", "SPEC",
        "the tokenizer (a tokenizer.json, a checkpoint...) instead of the folder's own", "",
        [&](auto& v) { tokenizer = v; });
  t.add("--help,-h", "", "show this help", "", [&](auto&) { help = true; });
  t.parse(args);
  if (help) {
    std::cout << "usage: cllm import DIR --out CKPT [--tokenizer SPEC]\n\n"
                 "Reads a Hugging Face GPT-2 folder (config.json + model.safetensors, as cllm "
                 "export --format hf writes it; the tokenizer from vocab.json + merges.txt or "
                 "tokenizer.json) and writes a cllm checkpoint of step 0 that cllm sample and "
                 "cllm export read. To train from such a folder: cllm train --init-from DIR.\n"
              << t.help();
    return 0;
  }
  if (t.positionals.empty())
    throw UsageError("cllm import needs a Hugging Face GPT-2 folder (see cllm import --help)");
  if (t.positionals.size() > 1)
    throw UsageError("unexpected argument '" + printable(t.positionals[1], 60) + "'");
  if (out.empty()) throw UsageError("cllm import needs --out FILE");
  std::error_code ec;
  if (std::filesystem::symlink_status(out, ec).type() != std::filesystem::file_type::not_found)
    throw ConfigError(
        fmt::format("'{}' already exists; remove it or choose another --out", printable(out, 200)));
  const Checkpoint ck = import_hf_gpt2(t.positionals[0], tokenizer);
  save_checkpoint(out, ck);
  std::cout << fmt::format("imported {} ({}, {} parameters, {} tokenizer) as {}\n",
                           printable(t.positionals[0], 200), ck.model.describe(),
                           ParamLayout(ck.model).num_parameters(), ck.tokenizer_kind,
                           printable(out, 200));
  return 0;
}

}  // namespace cllm
