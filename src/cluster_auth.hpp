#pragma once
// The cluster's shared secret and the join handshake's proofs, without actors. A node and the
// root each prove that they hold the key over fresh nonces from both sides (so neither proof can
// be replayed), bound to the node's id (so a proof cannot be reused for another node).
#include <string>

namespace cllm {

// Reads a cluster key file: its bytes with surrounding whitespace trimmed, at least 16 of them.
// A file others can read is refused (as ssh refuses such keys). Throws ConfigError naming the
// file and the problem.
std::string read_cluster_key(const std::string& path);

// HMAC-SHA256(key, label | root nonce | node nonce | node id), hex. The labels differ, so the
// root's proof is not a node's.
std::string node_join_proof(const std::string& key, const std::string& root_nonce,
                            const std::string& node_nonce, const std::string& node_id);
std::string root_join_proof(const std::string& key, const std::string& root_nonce,
                            const std::string& node_nonce, const std::string& node_id);

}  // namespace cllm
