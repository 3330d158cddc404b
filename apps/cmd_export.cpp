// `cllm export CHECKPOINT|RUN_DIR --format hf|gguf --out PATH`: thin wiring over src/export.
#include "apps/cmd_export.hpp"

#include <iostream>

#include <fmt/format.h>

#include "run/options.hpp"
#include "src/config.hpp"
#include "src/export.hpp"
#include "src/safetensors.hpp"

namespace cllm {

using cli::OptionTable;
using cli::UsageError;

int cmd_export(const std::vector<std::string>& args) {
  std::string format, out;
  bool help = false;
  OptionTable t;
  t.add("--format", "FORMAT", "hf (a Hugging Face GPT-2 folder) or gguf (one llama.cpp file)", "",
        [&](auto& v) { format = v; });
  t.add("--out", "PATH", "the folder (hf) or file (gguf) to create; it must not exist", "",
        [&](auto& v) { out = v; });
  t.add("--help,-h", "", "show this help", "", [&](auto&) { help = true; });
  t.parse(args);
  if (help) {
    std::cout << "usage: cllm export CHECKPOINT|RUN_DIR --format hf|gguf --out PATH\n\n"
                 "Writes the model and its tokenizer in a format other tools load: hf = "
                 "config.json, model.safetensors, tokenizer.json, tokenizer_config.json and "
                 "generation_config.json for transformers' GPT2LMHeadModel; gguf = one file for "
                 "llama.cpp's gpt2 architecture. A run folder exports its newest checkpoint. "
                 "Nothing is left at PATH when the export fails.\n"
              << t.help();
    return 0;
  }
  if (t.positionals.empty())
    throw UsageError("cllm export needs a checkpoint or run folder (see cllm export --help)");
  if (t.positionals.size() > 1) throw UsageError("unexpected argument '" + t.positionals[1] + "'");
  if (format != "hf" && format != "gguf")
    throw UsageError(format.empty() ? "cllm export needs --format hf or --format gguf"
                                    : "option --format expects hf or gguf, got '" + format + "'");
  if (out.empty()) throw UsageError("cllm export needs --out PATH");
  const Checkpoint ck = load_checkpoint_or_run(t.positionals[0]);
  ExportSummary s;
  try {
    s = format == "hf" ? export_hf(ck, out) : export_gguf(ck, out);
  } catch (const ConfigError&) {
    throw;
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    // Writing PATH failed (a read-only mount, a full disk): bad output, exit 2 as documented.
    throw UsageError(fmt::format("cannot export to '{}': {}", out, e.what()));
  }
  std::cout << fmt::format(
      "exported {} (step {}, {}, {} tokenizer) as {}: {} ({} tensors, {:.1f} MB)\n", ck.source_path,
      ck.step, ck.model.describe(), ck.tokenizer_kind, format, s.path, s.tensors,
      double(s.bytes) / 1e6);
  return 0;
}

}  // namespace cllm
