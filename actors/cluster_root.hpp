#pragma once
// The root's side of a cluster: the gateway, published on the network, that lets a node in only
// once it has proven it holds the cluster key and computes exactly as the root does; and one link
// per node, which stands for the node's subtree in the coordinator (link_actor extends the sphere
// protocol) and moves its work, weights and partial sums over the network. The interfaces are in
// messages/cluster.hpp.
#include <functional>
#include <memory>
#include <string>

#include <caf/all.hpp>

#include "messages/cluster.hpp"
#include "src/fingerprint.hpp"
#include "src/sampler.hpp"

namespace cllm {

struct ClusterSetup {
  RunConfig run;
  std::string key;  // the cluster key ("" on loopback without one)
  NumericsFingerprint fingerprint;
  std::string tokenizer_kind, tokenizer_data;
  const WindowSampler* sampler = nullptr;  // the windows shipped with each node's work
  coordinator_actor coordinator;
  std::function<void(const std::string&)> log;  // one line about a peer (refusals)
};

gateway_actor spawn_gateway(caf::actor_system& sys, std::shared_ptr<const ClusterSetup> setup);

}  // namespace cllm
