#include "src/cluster_auth.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "src/config.hpp"
#include "src/hmac.hpp"
#include "src/regular_file.hpp"

namespace cllm {

namespace {
std::string proof(const char* label, const std::string& key, const std::string& root_nonce,
                  const std::string& node_nonce, const std::string& node_id) {
  std::string msg = label;
  for (const std::string* part : {&root_nonce, &node_nonce, &node_id}) {
    msg += '\0';
    msg += *part;
  }
  return hmac_sha256_hex(key, msg);
}
}  // namespace

std::string read_cluster_key(const std::string& path) {
  const RegularFile f = open_regular_file<ConfigError>(path, 4096, "cluster key file");
  if (f.mode() & (S_IRWXG | S_IRWXO))
    throw ConfigError(fmt::format(
        "cluster key file '{}' can be read by others; make it private with chmod 600", path));
  std::string key, why;
  if (!f.read_all(key, why)) throw ConfigError(why);
  const auto b = key.find_first_not_of(" \t\r\n");
  const auto e = key.find_last_not_of(" \t\r\n");
  key = b == std::string::npos ? std::string() : key.substr(b, e - b + 1);
  if (key.size() < 16)
    throw ConfigError(fmt::format(
        "cluster key file '{}' holds {} bytes; use at least 16 random ones, e.g. 'head -c 32 "
        "/dev/urandom | base64 > {}'",
        path, key.size(), path));
  return key;
}

std::string node_join_proof(const std::string& key, const std::string& root_nonce,
                            const std::string& node_nonce, const std::string& node_id) {
  return proof("cllm node join v1", key, root_nonce, node_nonce, node_id);
}

std::string root_join_proof(const std::string& key, const std::string& root_nonce,
                            const std::string& node_nonce, const std::string& node_id) {
  return proof("cllm root welcome v1", key, root_nonce, node_nonce, node_id);
}

}  // namespace cllm
