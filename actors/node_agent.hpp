#pragma once
// A node: a process whose sphere subtree computes shards for a root on another machine. Its
// agent dials the root, proves the cluster key, shows its numerics fingerprint, and then serves
// the root's requests with its own local coordinator and spheres (supervised locally as in one
// process). It needs no corpus: each request carries its shards' token windows, and the weights
// come as raw bytes. When the root goes away it dials again (with backoff), so a restarted root
// finds its nodes back.
#include <memory>
#include <string>

#include <caf/all.hpp>

#include "actors/cluster_transport.hpp"
#include "messages/cluster.hpp"
#include "src/cluster_timing.hpp"
#include "src/supervision.hpp"
#include "src/topology.hpp"

namespace cllm {

struct NodeOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  // The root itself, when host:port is a local relay to it (src/cluster_guard.hpp): where a
  // failed dial's TLS probe goes. Empty: host:port.
  std::string root_host;
  uint16_t root_port = 0;
  std::string key;  // the cluster key ("" when the root has none, on loopback)
  TlsFiles tls;     // as the root's: TLS with mutual certificate checks, or none
  std::string node_id, node_host;
  int spheres = 1, fanout = 12, threads = 1;
  Placement placement = Placement::bfs;
  bool recompute = false;  // this node's choice (RunConfig::recompute), whatever the root's
  SupervisionPolicy policy;
  double reconnect_timeout_s =
      kDefaultJoinTimeoutS;       // give up dialing a root that does not come back
  bool perturb_probe = false;     // tests: a fingerprint as from another CPU
  int die_in_exchange = 0;        // tests: SIGKILL itself in its Nth exchange, its pieces sent
  int mute_in_exchange = 0;       // tests: send no pieces in its Nth exchange (< 0: in every one)
  bool withhold_weights = false;  // tests: never forward its share of the weights (a stuck peer)
  double slow_factor = 1;         // tests: answer as a node this many times slower would
  // Where the other nodes reach this one for the exchanges (actors/coordinator.cpp); empty: they
  // do not, and it sends its sums to the root.
  std::string peer_host;
  uint16_t peer_port = 0;  // 0: any free port
};

// Spawns the agent; it ends with an error of category "node" (code node_exit, context the line
// to print: messages/cluster.hpp).
agent_actor spawn_node_agent(caf::actor_system& sys, NodeOptions opt);

// Asks the agent to leave after its current step (from an actor of its own process: the agent is
// published for its peers, and takes this only from its own process).
void request_leave(caf::scoped_actor& self, const agent_actor& agent);

}  // namespace cllm
