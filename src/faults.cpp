#include "src/faults.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>

#include "src/config.hpp"
#include "src/rng.hpp"
#include "src/safe_text.hpp"

namespace cllm {

Injection parse_injection(const std::string& text) {
  const auto bad = [&](const std::string& why) {
    return ConfigError(printable(fmt::format(
        "bad --inject '{}': {} (expected crash:sphere=K,step=S, hang:sphere=K,step=S or "
        "crash:owner=K,step=S)",
        text, why)));
  };
  Injection inj;
  const auto colon = text.find(':');
  if (colon == std::string::npos) throw bad("missing ':'");
  const std::string kind = text.substr(0, colon);
  if (kind == "crash")
    inj.kind = Injection::crash;
  else if (kind == "hang")
    inj.kind = Injection::hang;
  else
    throw bad("unknown kind '" + kind + "'");
  bool have_target = false, have_step = false;
  size_t pos = colon + 1;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(pos, end - pos);
    const auto eq = item.find('=');
    if (eq == std::string::npos) throw bad("expected key=value, got '" + item + "'");
    const std::string key = item.substr(0, eq), val = item.substr(eq + 1);
    char* rest = nullptr;
    errno = 0;
    const long long v = std::strtoll(val.c_str(), &rest, 10);
    if (val.empty() || *rest != '\0' || v < 0) throw bad("'" + val + "' is not a number >= 0");
    if (errno == ERANGE) throw bad("'" + val + "' is out of range");
    if (key == "sphere" || key == "owner") {
      if (have_target) throw bad("name one sphere or one owner");
      if (v > 1000000) throw bad("no tree has " + key + " " + val);
      inj.sphere = int(v), inj.owner = key == "owner", have_target = true;
    } else if (key == "step") {
      if (v < 1) throw bad("steps count from 1");
      inj.step = v - 1;  // the user counts steps from 1, as the progress line does
      have_step = true;
    } else
      throw bad("unknown key '" + key + "'");
    pos = end + 1;
  }
  if (!have_target || !have_step) throw bad("both sphere= (or owner=) and step= are required");
  // An owner answers every fold at once; only a crash of one is meaningful.
  if (inj.owner && inj.kind == Injection::hang) throw bad("an owner can only crash");
  return inj;
}

std::string describe(const Injection& inj) {
  return fmt::format("{}:{}={},step={}", inj.kind == Injection::crash ? "crash" : "hang",
                     inj.owner ? "owner" : "sphere", inj.sphere, inj.step + 1);
}

FaultPlan::Action FaultPlan::action(int id, int64_t step, int32_t attempt, int32_t delivery) const {
  if (attempt == 0 && delivery == 0)
    for (const auto& i : injections)
      if (!i.owner && i.sphere == id && i.step == step)
        return i.kind == Injection::crash ? do_crash : do_hang;
  if (chaos_p > 0 && uniform01(hash_words(chaos_seed, uint64_t(id), uint64_t(step),
                                          uint64_t(attempt), uint64_t(delivery))) < chaos_p)
    return do_crash;
  return none;
}

std::vector<int64_t> FaultPlan::owner_crash_steps(int k) const {
  std::vector<int64_t> steps;
  for (const auto& i : injections)
    if (i.owner && i.sphere == k) steps.push_back(i.step);
  return steps;
}

}  // namespace cllm
