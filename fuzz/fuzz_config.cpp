// Any bytes as a config file for an option table with every kind of option the commands use
// (integers, numbers, text, flags, a validator that throws, aliases): it is applied or refused
// with one clean line naming the file and line, never a crash, and never slow (one pass).
#include <cstdint>
#include <string>

#include "fuzz_util.hpp"
#include "run/options.hpp"
#include "src/config.hpp"

using namespace cllm;
using namespace cllm::cli;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  long long steps = 0;
  double lr = 0, epochs = 0;
  std::string corpus, progress;
  bool resume = false;
  ModelConfig model;
  OptionTable t;
  t.add("--steps", "N", "", "", [&](auto& v) { steps = to_int("--steps", v, 1, 1LL << 40); });
  t.add("--lr,--learning-rate", "X", "", "", [&](auto& v) { lr = to_double("--lr", v); });
  t.add("--epochs", "E", "", "", [&](auto& v) {
    epochs = to_double("--epochs", v);
    if (!(epochs > 0)) throw UsageError("option --epochs must be > 0, got " + printable(v, 60));
  });
  t.add("--corpus", "PATH", "", "", [&](auto& v) { corpus = v; });
  t.add("--model", "NAME", "", "", [&](auto& v) { model = model_preset(v); });  // ConfigError
  t.add("--progress", "MODE", "", "", [&](auto& v) {
    if (v != "auto" && v != "plain") throw UsageError("option --progress expects auto or plain");
    progress = v;
  });
  t.add("--resume", "", "", "", [&](auto&) { resume = true; });
  t.add("--config", "FILE", "", "", [](auto&) {});
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    t.parse_config_text(text, "fuzz.cfg");
  } catch (const UsageError& e) {
    fuzz::check_message(e.what());
    if (std::string(e.what()).rfind("config file 'fuzz.cfg' line ", 0) != 0)
      fuzz::fail(std::string("error without file and line: ") + e.what());
  }
  return 0;
}
