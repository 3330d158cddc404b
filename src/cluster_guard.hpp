#pragma once
// A guard in front of the cluster's CAF port, so that a peer that has not proven the cluster key
// cannot make the root allocate anything beyond a fixed buffer. CAF 0.17's BASP trusts the length
// in a 32-byte header before any of our code runs (a header claiming 4 GiB grew the root by
// gigabytes), so nothing unauthenticated may reach it:
//
//   root:  ClusterGuard listens on --listen. For each connection it sends a fresh nonce, reads
//          exactly kProofBytes within kProofTimeoutS, and only when they are HMAC-SHA256(key,
//          label | nonce) connects to the actor system's port on loopback and relays bytes both
//          ways. Anything else is cut off having cost the root one small buffer.
//   node:  GuardDialer listens on a loopback port for the node's actor system; each connection
//          dials the root, answers the challenge, then relays.
//
// The actor-level join (src/cluster_auth.hpp) still proves the key both ways; this only bounds
// what an unauthenticated peer costs. It does not encrypt.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace cllm {

constexpr size_t kProofBytes = 64;  // the hex HMAC a peer must send first
constexpr double kProofTimeoutS = 10;
constexpr int kMaxPendingProofs = 256;  // connections not yet proven; more are closed at once

class ClusterGuard {
 public:
  // Listens on host:port (0: any free port) and relays proven connections to 127.0.0.1:inner_port.
  // Throws std::runtime_error (one line) when it cannot listen.
  // `log` gets one line per peer that sent a complete but wrong proof (called from its thread).
  ClusterGuard(const std::string& host, uint16_t port, std::string key, uint16_t inner_port,
               std::function<void(const std::string&)> log);
  ~ClusterGuard();  // stops listening and closes every connection
  ClusterGuard(const ClusterGuard&) = delete;
  ClusterGuard& operator=(const ClusterGuard&) = delete;
  uint16_t port() const;
  uint64_t refused() const;  // connections cut off without a valid proof

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class GuardDialer {
 public:
  // Listens on 127.0.0.1 (any free port); each connection there is relayed to root_host:root_port
  // after answering the root's challenge with `key` (a root without a guard is relayed as it is).
  // Throws std::runtime_error.
  GuardDialer(std::string root_host, uint16_t root_port, std::string key);
  ~GuardDialer();
  GuardDialer(const GuardDialer&) = delete;
  GuardDialer& operator=(const GuardDialer&) = delete;
  uint16_t port() const;
  // Why the root's guard turned this node away ("" while it has not): the node has no key, or
  // not the root's.
  std::string refusal() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cllm
