#pragma once
// How the root and the nodes reach each other: CAF's BASP over plain TCP, or over TLS with mutual
// certificate checks (CAF's libcaf_openssl). With TLS both sides present a certificate signed by
// the cluster's CA and verify the other's against it; a peer without one is cut off during the
// TLS handshake, before any BASP byte of it is read. The cluster key's HMAC join runs inside
// either way.
#include <cstdint>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/expected.hpp>
#include <caf/io/middleman_actor.hpp>

#include "messages/cluster.hpp"

namespace cllm {

// PEM files: this side's certificate and private key, and the CA that signs every member's
// certificate. All empty: plain TCP.
struct TlsFiles {
  std::string cert, key, ca;
  bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty(); }
};

// Checks the files before anything is started (CAF reads them only at the first connection and
// aborts the process there if they are bad): all three or none, readable, PEM, the key matching
// the certificate, and the certificate signed by the CA. Throws ConfigError with one line naming
// the option, the file and the problem.
void check_tls_files(const TlsFiles& tls);

// Loads the middleman into `cfg`, and with TLS the OpenSSL module with the files.
void load_cluster_transport(caf::actor_system_config& cfg, const TlsFiles& tls);

// Publishes the gateway on host:port over the transport loaded above, with its interface (which
// a node checks before it says hello); the bound port.
caf::expected<uint16_t> publish_on_cluster(caf::actor_system& sys, const gateway_actor& whom,
                                           uint16_t port, const std::string& host);

// The middleman actor that dials over the transport loaded above (connect_atom requests).
caf::io::middleman_actor cluster_dialer(caf::actor_system& sys);

// After a dial failed: one line saying why the root refuses this node at the TLS level (the root
// wants TLS and this node has none, the root does not speak TLS, the root's certificate fails
// --tls-ca, or the root rejected this node's certificate), or "" when TLS is not the reason (no
// one listening, the root went away): dial again then. Blocks for at most a few seconds.
std::string tls_refusal(const std::string& host, uint16_t port, const TlsFiles& tls);

// tls_refusal on a thread of its own, so that an actor need not block: answers one request
// (host, port) with the line (or "") and quits.
caf::actor spawn_tls_prober(caf::actor_system& sys, const TlsFiles& tls);

}  // namespace cllm
