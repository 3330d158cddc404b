#pragma once
// The cluster's timing defaults, in one place for the root's settings, the coordinator, the tree
// backend and the node (they were 60 s in one header and 300 s in others).
namespace cllm {

// How long the root waits for --min-nodes, a step with no member left waits for a node, and a
// node keeps dialing a root that went away.
constexpr double kDefaultJoinTimeoutS = 300;
// CAF heartbeats: a peer silent for the connection timeout is lost.
constexpr int kDefaultHeartbeatMs = 500;
constexpr double kDefaultConnectionTimeoutS = 5;

}  // namespace cllm
