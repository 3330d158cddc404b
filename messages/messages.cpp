#include "messages/messages.hpp"

namespace cllm {

void register_messages(caf::actor_system_config& cfg) {
  cfg.add_message_type<StepWork>("cllm.step_work");
  cfg.add_message_type<StepCtl>("cllm.step_ctl");
  cfg.add_message_type<ExactGrad>("cllm.exact_grad");
  cfg.add_message_type<StepTiming>("cllm.step_timing");
  cfg.add_message_type<FaultCounts>("cllm.fault_counts");
  cfg.add_message_type<Partial>("cllm.partial");
  cfg.add_message_type<SphereStats>("cllm.sphere_stats");
  cfg.add_message_type<std::vector<SphereStats>>("cllm.sphere_stats_list");
}

}  // namespace cllm
