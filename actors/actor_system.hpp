#pragma once
// The actor system's configuration, made in one place for the root (actors/tree_backend.cpp) and
// for a node (apps/cmd_node.cpp), so that both get the same scheduler tuning and network settings.
#include <caf/actor_system_config.hpp>

#include "actors/cluster_transport.hpp"
#include "src/cluster_timing.hpp"

namespace cllm {

struct ActorSystemTuning {
  int threads = 1;       // CAF scheduler threads
  bool network = false;  // loads the middleman (a root with --listen, every node)
  int heartbeat_ms =
      kDefaultHeartbeatMs;  // with network: CAF heartbeats, so a frozen peer is noticed
  double connection_timeout_s = kDefaultConnectionTimeoutS;  // ... after this long without one
  TlsFiles tls;  // with network: TLS for the cluster (none: plain TCP)
};

// Registers the message types and applies `t` to `cfg` (call it from the constructor of a
// caf::actor_system_config, before the actor system is made from it).
void configure_actor_system(caf::actor_system_config& cfg, const ActorSystemTuning& t);

}  // namespace cllm
