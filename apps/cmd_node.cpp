// cllm node: a worker process whose spheres compute shards for a root on another machine.
#include "apps/cmd_node.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <iostream>
#include <optional>

#include <fmt/format.h>
#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/actor_system.hpp"
#include "actors/node_agent.hpp"
#include "messages/messages.hpp"
#include "run/net_address.hpp"
#include "run/options.hpp"
#include "run/settings.hpp"
#include "run/sysinfo.hpp"
#include "src/cluster_auth.hpp"
#include "src/cluster_guard.hpp"
#include "src/cluster_timing.hpp"
#include "src/safe_text.hpp"
#include "src/train_loop.hpp"

namespace cllm {

namespace {

volatile std::sig_atomic_t g_node_signals = 0;
StopToken* g_node_stop = nullptr;
void on_node_signal(int sig) {
  if (++g_node_signals > 1) _exit(128 + sig);  // a second signal: leave at once
  if (g_node_stop) g_node_stop->request();
}

constexpr size_t kMaxNodeIdChars = 64;

struct NodeArgs {
  std::string join, key_file;
  std::string peer_listen = "auto";
  int heartbeat_ms = kDefaultHeartbeatMs;
  double connection_timeout = kDefaultConnectionTimeoutS;
  bool help = false;
  NodeOptions opt;
};

cli::OptionTable node_options(NodeArgs& a) {
  cli::OptionTable t;
  t.add("--join", "HOST:PORT", "the root to join (cllm train --listen)", "",
        [&a](const std::string& v) { a.join = v; });
  // The subtree and its links: the same declarations (and limits) as cllm train's.
  sphere_options(t, a.opt.spheres, a.opt.fanout, a.opt.threads, a.opt.placement, a.opt.recompute, 1,
                 "spheres of this node");
  link_options(t, a.key_file, a.heartbeat_ms, a.connection_timeout);
  tls_options(t, a.opt.tls.cert, a.opt.tls.key, a.opt.tls.ca);
  t.add("--node-id", "ID", "this node's name in the cluster (unique)", "HOST-PID",
        [&a](const std::string& v) {
          // Checked here, not first at the root: it appears in the root's lines and files.
          const bool ok_chars = std::all_of(v.begin(), v.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
          });
          if (v.empty() || v.size() > kMaxNodeIdChars || !ok_chars)
            throw cli::UsageError(fmt::format(
                "option --node-id takes 1 to {} letters, digits, '-', '_' or '.', got '{}'",
                kMaxNodeIdChars, printable(v, 80)));
          a.opt.node_id = v;
        });
  t.add("--peer-listen", "HOST:PORT",
        "where the other nodes reach this one to exchange sums and weights (off: they do not, and "
        "this node sends its sums to the root; not with TLS)",
        "this machine's address towards the root, any free port",
        [&a](const std::string& v) { a.peer_listen = v; });
  t.add("--reconnect-timeout", "SECONDS", "keep dialing a root that went away this long",
        fmt::format("{:g}", kDefaultJoinTimeoutS), [&a](const std::string& v) {
          a.opt.reconnect_timeout_s = cli::to_double("--reconnect-timeout", v);
        });
  t.add("--help,-h", "", "show this help", "", [&a](const std::string&) { a.help = true; });
  return t;
}

// Where the peers reach this node: --peer-listen, or this machine's address towards the root.
// Off loopback the peers must prove the key (or TLS), as for the root's --listen.
void set_peer_listen(NodeArgs& a) {
  if (a.peer_listen == "off") return;
  // Not with TLS: connections between two nodes over CAF 0.17's TLS sometimes hang in their
  // handshake, and the nodes' links to the root time out meanwhile (seen under load in the
  // tests). TLS nodes send their sums to the root (the star).
  if (a.opt.tls.enabled()) {
    if (a.peer_listen == "auto") return;
    throw cli::UsageError(
        "--peer-listen cannot be used with TLS (--tls-*): the nodes of a TLS cluster send their "
        "sums to the root; for the exchange between nodes use a cluster key without TLS");
  }
  HostPort hp{local_address_towards(a.opt.host, a.opt.port), 0};
  if (a.peer_listen != "auto") hp = parse_host_port(a.peer_listen, "--peer-listen", true);
  if (hp.host.empty()) return;  // no route to the root now: the node sends its sums to the root
  if (const std::string why = listen_problem(hp); !why.empty())
    throw cli::UsageError(
        fmt::format("--peer-listen {}:{}: cannot listen there: {}", hp.host, hp.port, why));
  if (a.opt.key.empty() && !a.opt.tls.enabled() && !is_loopback(hp.host))
    throw cli::UsageError(fmt::format(
        "--peer-listen {} can be reached from other machines, and peers would connect "
        "unauthenticated; give this node the cluster's --cluster-key (or TLS), or --peer-listen "
        "off",
        hp.host));
  a.opt.peer_host = hp.host, a.opt.peer_port = hp.port;
}

// The root's actor system configuration (actors/actor_system.hpp), with the network on.
struct NodeConfig : caf::actor_system_config {
  explicit NodeConfig(const NodeArgs& a) {
    configure_actor_system(*this,
                           {a.opt.threads, true, a.heartbeat_ms, a.connection_timeout, a.opt.tls});
  }
};

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

// Waits for the agent to end (asking it to leave on SIGINT/SIGTERM); returns the exit code.
// `dialer`: the root's guard turned this node away (no key, another key): exit 2 at once.
int run_agent(caf::actor_system& sys, const NodeOptions& opt, const GuardDialer* dialer) {
  StopToken stop;
  g_node_stop = &stop;
  std::signal(SIGINT, on_node_signal);
  std::signal(SIGTERM, on_node_signal);
  caf::error reason;
  {
    caf::scoped_actor self{sys};
    auto agent = spawn_node_agent(sys, opt);
    self->monitor(agent);
    bool done = false, asked = false;
    std::string refused;
    while (!done) {
      self->receive([&](caf::down_msg& dm) { reason = dm.reason, done = true; },
                    caf::after(std::chrono::milliseconds(100)) >>
                        [&] {
                          if (stop.requested() && !asked) request_leave(self, agent), asked = true;
                          if (dialer && refused.empty() && !(refused = dialer->refusal()).empty())
                            self->send_exit(agent, caf::exit_reason::kill);
                        });
    }
    if (!refused.empty()) {
      g_node_stop = nullptr;
      std::cerr << "cllm node: " << refused << std::endl;
      return 2;
    }
  }
  g_node_stop = nullptr;
  const std::string line = exit_reason_text(sys, reason);
  const auto code = as_node_exit(reason);
  const bool ok = code == node_exit::done || code == node_exit::left;
  (ok ? std::cout : std::cerr) << "cllm node: " << line << std::endl;
  if (ok) return 0;
  return code == node_exit::refused ? 2 : 3;
}

}  // namespace

int cmd_node(const std::vector<std::string>& args) {
  NodeArgs a;
  // A root (or a TLS probe's peer) that hangs up must cost an EPIPE, not the node: OpenSSL and
  // the local relay write to sockets whose other end may be gone.
  std::signal(SIGPIPE, SIG_IGN);
  a.opt.spheres = a.opt.threads = detected_cores();
  cli::OptionTable t = node_options(a);
  t.parse(args);
  if (a.help) {
    std::cout << "usage: cllm node --join HOST:PORT [options]\n\nJoins a training run (cllm train "
                 "--listen) as one subtree of spheres: no corpus and no run folder needed.\n"
              << t.help();
    return 0;
  }
  if (!t.positionals.empty())
    throw cli::UsageError("unexpected argument '" + t.positionals[0] + "' (see cllm node --help)");
  if (a.join.empty()) throw cli::UsageError("cllm node needs --join HOST:PORT (the root)");
  const HostPort hp = parse_host_port(a.join, "--join", /*port_zero_ok=*/false);
  a.opt.host = hp.host, a.opt.port = hp.port;
  if (!a.key_file.empty()) a.opt.key = read_cluster_key(a.key_file);
  check_tls_files(a.opt.tls);
  if (!(a.opt.reconnect_timeout_s >= 0 && a.opt.reconnect_timeout_s <= kMaxJoinTimeoutS))
    throw cli::UsageError(
        fmt::format("option --reconnect-timeout must be at least 0 and at most "
                    "{:g} seconds, got {}",
                    kMaxJoinTimeoutS, a.opt.reconnect_timeout_s));
  set_peer_listen(a);
  a.opt.node_host = host_name();
  if (a.opt.node_id.empty()) a.opt.node_id = fmt::format("{}-{}", a.opt.node_host, ::getpid());
  // A test-only stand-in for a machine whose numerics differ (see src/fingerprint.hpp).
  a.opt.perturb_probe = std::getenv("CLLM_TEST_PERTURB_PROBE") != nullptr;
  // A test-only kill of this node in the middle of its Nth exchange of sums with its peers.
  if (const char* n = std::getenv("CLLM_TEST_DIE_IN_EXCHANGE"))
    a.opt.die_in_exchange = std::atoi(n);
  // ... one that sends its peers nothing in its Nth exchange (stuck, yet connected) ...
  if (const char* n = std::getenv("CLLM_TEST_MUTE_IN_EXCHANGE"))
    a.opt.mute_in_exchange = std::atoi(n);
  // ... and one that never forwards its share of the weights to its peers.
  a.opt.withhold_weights = std::getenv("CLLM_TEST_WITHHOLD_WEIGHTS") != nullptr;
  // ... and one that answers as a node N times slower would (a slower machine).
  if (const char* n = std::getenv("CLLM_TEST_SLOW_NODE")) a.opt.slow_factor = std::atof(n);
  Topology(a.opt.spheres, a.opt.fanout);  // validates the shape before dialing
  // The node dials the root through a local relay that answers the root's guard (see
  // src/cluster_guard.hpp); a root without a guard is relayed as it is. Not with TLS and no key:
  // the relay waits for the root to speak first (a guard's challenge, BASP's handshake), while a
  // TLS client speaks first, and a TLS root without a key has no guard to answer.
  const std::string root = fmt::format("{}:{}", a.opt.host, a.opt.port);
  std::optional<GuardDialer> dialer;
  if (!a.opt.key.empty() || !a.opt.tls.enabled()) {
    dialer.emplace(a.opt.host, a.opt.port, a.opt.key);
    a.opt.root_host = a.opt.host, a.opt.root_port = a.opt.port;
    a.opt.host = "127.0.0.1", a.opt.port = dialer->port();
  }
  NodeConfig cfg(a);
  caf::actor_system sys{cfg};
  std::cout << fmt::format("cllm node: {} spheres, fan-out {}, {} threads; dialing {}\n",
                           a.opt.spheres, a.opt.fanout, a.opt.threads, root)
            << std::flush;
  return run_agent(sys, a.opt, dialer ? &*dialer : nullptr);
}

}  // namespace cllm
