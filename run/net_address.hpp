#pragma once
// HOST:PORT on the command line (--listen, --join).
#include <cstdint>
#include <string>

namespace cllm {

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

// "127.0.0.1:7100", "[::1]:7100", "node-3:0". Throws UsageError naming `option`.
HostPort parse_host_port(const std::string& text, const std::string& option, bool port_zero_ok);

// 127.0.0.0/8, ::1 and "localhost": addresses no other machine can reach.
bool is_loopback(const std::string& host);

}  // namespace cllm
