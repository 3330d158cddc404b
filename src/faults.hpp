#pragma once
// Fault injection: plain data shared (immutably) by every sphere.
#include <cstdint>
#include <string>
#include <vector>

namespace cllm {

struct Injection {
  enum Kind { crash, hang } kind = crash;
  int sphere = 0;      // the sphere, or with `owner` the owner (slice) index
  int64_t step = 0;    // 0-based step index (StepWork::step); the command line counts from 1
  bool owner = false;  // an owner of the step's sums (crash only), not a sphere
};

// Parses "crash:sphere=K,step=S", "hang:sphere=K,step=S" or "crash:owner=K,step=S"; throws
// ConfigError naming the text.
Injection parse_injection(const std::string& text);
// The same text back: "crash:sphere=3,step=5" (steps counted from 1).
std::string describe(const Injection& inj);

struct FaultPlan {
  std::vector<Injection> injections;  // each fires once: first delivery of the step's first attempt
  double chaos_p = 0;                 // per sphere and step: crash with this probability
  uint64_t chaos_seed = 1;

  bool any() const { return !injections.empty() || chaos_p > 0; }
  // What sphere `id` should do on receiving `step` (attempt, delivery). Pure function.
  enum Action { none, do_crash, do_hang };
  Action action(int id, int64_t step, int32_t attempt, int32_t delivery) const;
  // The steps at which owner `k` crashes (on its first fold of the step's first attempt).
  std::vector<int64_t> owner_crash_steps(int k) const;
};

}  // namespace cllm
