#include "src/supervision.hpp"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "src/clock.hpp"
#include "src/config.hpp"
#include "src/rng.hpp"

namespace cllm {

void SupervisionPolicy::validate() const {
  if (max_restarts < 0 || root_max_restarts < 0) throw ConfigError("restart limits must be >= 0");
  if (!(window_s > 0 && window_s <= 1e6) || !(root_window_s > 0 && root_window_s <= 1e6))
    throw ConfigError("restart windows must be in (0, 1e6] s");
  // Below 2x the median step time healthy steps would be killed as hangs.
  if (!(deadline_factor >= 2 && deadline_factor <= 1e6))
    throw ConfigError(fmt::format("deadline factor must be in [2, 1e6], got {}", deadline_factor));
  if (!(deadline_floor_s > 0 && deadline_floor_s <= 86400))
    throw ConfigError(
        fmt::format("deadline floor must be in (0, 86400] s, got {}", deadline_floor_s));
  if (!(first_deadline_s > 0 && first_deadline_s <= 86400))
    throw ConfigError("first-step deadline must be in (0, 86400] s");
}

RestartIntensity::RestartIntensity(int max_restarts, double window_s)
    : max_restarts_(max_restarts), window_s_(window_s) {}

RestartIntensity::Decision RestartIntensity::on_child_exit(ChildExit how, FaultEvent event,
                                                           double now_s, bool in_step) {
  Decision d;
  if (how == ChildExit::missed_deadline) ++d.counts.deadline_kills;
  times_.push_back(now_s);
  while (!times_.empty() && now_s - times_.front() > window_s_) times_.pop_front();
  if (in_step) ++this_step_;
  d.restart = int(times_.size()) <= max_restarts_ && this_step_ <= max_restarts_;
  if (d.restart) ++(how == ChildExit::gave_up ? d.counts.subtree_restarts : d.counts.restarts);
  event.kind = how == ChildExit::crashed           ? FaultEvent::crashed
               : how == ChildExit::missed_deadline ? FaultEvent::missed_deadline
                                                   : FaultEvent::gave_up;
  d.counts.events.push_back(std::move(event));
  return d;
}

std::string RestartIntensity::budget_text() const {
  return fmt::format("more than {} restarts of its children within {:g} s or one step",
                     max_restarts_, window_s_);
}

std::string last_failure_text(const FaultEvent& last) {
  const char* what = last.kind == FaultEvent::gave_up           ? "gave up"
                     : last.kind == FaultEvent::missed_deadline ? "was killed"
                                                                : "crashed";
  return fmt::format("the last: sphere {} {} ({})", last.sphere, what, last.reason);
}

int32_t next_delivery(int32_t parent, int32_t resend) {
  if (parent == 0 && resend == 0) return 0;
  return int32_t(hash_words(uint64_t(uint32_t(parent)), uint64_t(resend)) & 0x7fffffffU) | 1;
}

StepDeadline::StepDeadline(const SupervisionPolicy& policy, double first_step_estimate_s)
    : policy_(policy),
      first_ms_(
          std::min(1e9, 1000 * std::max(policy.first_deadline_s, 4 * first_step_estimate_s))) {}

int64_t StepDeadline::base_ms() const {
  if (recent_.empty()) return int64_t(std::min(1e9, first_ms_ * backoff_));
  std::vector<double> v(recent_.begin(), recent_.end());
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  const double d =
      std::max(policy_.deadline_floor_s * 1000, policy_.deadline_factor * v[v.size() / 2]);
  return int64_t(std::min(1e9, d * backoff_));
}

void StepDeadline::record_step(double ms, bool missed) {
  recent_.push_back(ms);
  if (recent_.size() > 9) recent_.pop_front();
  backoff_ = missed ? std::min(64, 2 * backoff_) : std::max(1, backoff_ / 2);
}

int64_t StepDeadline::for_resend(int64_t ms, int32_t resends) {
  const int shift = std::clamp(resends, 0, 10);
  return std::min<int64_t>(ms, int64_t(1e12) >> shift) << shift;
}

int64_t StepDeadline::for_subtree(int64_t base_ms, int height) {
  return std::min<int64_t>(base_ms * (int64_t(height) + 1), int64_t(1e12));
}

}  // namespace cllm
