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

// Why nothing can listen on hp (its port taken by another program, an address that is not this
// machine's), as a phrase; "" when a trial bind succeeds or the host does not resolve (the
// listener then names the problem). Checked before the actor system is made, whose own error
// reads "tcp socket creation failed".
std::string listen_problem(const HostPort& hp);

// This machine's address on the route to host:port (what a peer on that network reaches it by),
// or "" when there is none.
std::string local_address_towards(const std::string& host, uint16_t port);

// 127.0.0.0/8, ::1 and "localhost": addresses no other machine can reach.
bool is_loopback(const std::string& host);

}  // namespace cllm
