#pragma once
// Fault injection and supervision policy: plain data shared (immutably) by every sphere.
#include <cstdint>
#include <string>
#include <vector>

namespace cllm {

struct Injection {
  enum Kind { crash, hang } kind = crash;
  int sphere = 0;
  int64_t step = 0;  // 0-based step index (StepWork::step); the command line counts from 1
};

// Parses "crash:sphere=K,step=S" or "hang:sphere=K,step=S"; throws ConfigError naming the text.
Injection parse_injection(const std::string& text);

struct FaultPlan {
  std::vector<Injection> injections;  // each fires once: first delivery of the step's first attempt
  double chaos_p = 0;                 // per sphere and step: crash with this probability
  uint64_t chaos_seed = 1;

  bool any() const { return !injections.empty() || chaos_p > 0; }
  // What sphere `id` should do on receiving `step` (attempt, delivery). Pure function.
  enum Action { none, do_crash, do_hang };
  Action action(int id, int64_t step, int32_t attempt, int32_t delivery) const;
};

// OTP-style restart intensity and step deadlines.
struct SupervisionPolicy {
  int max_restarts = 10;      // a sphere restarts at most this many children ...
  double window_s = 10.0;     // ... within this many seconds, else it gives up
  int root_max_restarts = 3;  // the same budget for the root's single child (sphere 0)
  double root_window_s = 60.0;
  double deadline_factor = 4.0;    // deadline = factor x median recent step time ...
  double deadline_floor_s = 2.0;   // ... but at least this
  double first_deadline_s = 60.0;  // before any step time is known

  void validate() const;  // throws ConfigError
};

}  // namespace cllm
