#include "actors/actor_system.hpp"

#include <chrono>
#include <cstdint>

#include <caf/io/middleman.hpp>

#include "messages/messages.hpp"

namespace cllm {

void configure_actor_system(caf::actor_system_config& cfg, const ActorSystemTuning& t) {
  register_messages(cfg);
  cfg.set("scheduler.max-threads", t.threads);
  // A step's work reaches a sibling worker by stealing. CAF's defaults let an idle worker try
  // only every 5th poll with 50 us sleeps (then 10 ms sleeps once relaxed), which delayed the
  // start of sphere 1's work by 0.3-0.5 ms each step (measured). Poll more eagerly.
  cfg.set("work-stealing.moderate-steal-interval", 1);
  cfg.set("work-stealing.moderate-sleep-duration", caf::timespan{std::chrono::microseconds(20)});
  cfg.set("work-stealing.relaxed-sleep-duration", caf::timespan{std::chrono::microseconds(200)});
  if (t.network) {
    load_cluster_transport(cfg, t.tls);  // the middleman, and OpenSSL with TLS
    // Off by default in CAF 0.17: without them a frozen peer is never noticed.
    cfg.set("middleman.heartbeat-interval",
            caf::timespan{std::chrono::milliseconds(t.heartbeat_ms)});
    cfg.set("middleman.connection-timeout",
            caf::timespan{std::chrono::milliseconds(int64_t(t.connection_timeout_s * 1000))});
  }
}

}  // namespace cllm
