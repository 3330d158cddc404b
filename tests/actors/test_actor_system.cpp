// One configuration of the actor system for the root and the node (actors/actor_system.hpp): the
// node once built its own and missed the root's scheduler tuning (issue 19).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>

#include <caf/actor_system_config.hpp>

#include "actors/actor_system.hpp"

TEST_CASE("configure_actor_system: the root's scheduler tuning and network settings", "[tree]") {
  caf::actor_system_config cfg;
  cllm::configure_actor_system(cfg, {3, true, 250, 2.5, {}});
  CHECK(caf::get_or(cfg, "scheduler.max-threads", size_t{0}) == 3);
  CHECK(caf::get_or(cfg, "work-stealing.moderate-steal-interval", size_t{0}) == 1);
  CHECK(caf::get_or(cfg, "work-stealing.moderate-sleep-duration", caf::timespan{0}) ==
        caf::timespan{std::chrono::microseconds(20)});
  CHECK(caf::get_or(cfg, "middleman.heartbeat-interval", caf::timespan{0}) ==
        caf::timespan{std::chrono::milliseconds(250)});
  CHECK(caf::get_or(cfg, "middleman.connection-timeout", caf::timespan{0}) ==
        caf::timespan{std::chrono::milliseconds(2500)});
}
