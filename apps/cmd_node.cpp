// cllm node: a worker process whose spheres compute shards for a root on another machine.
#include "apps/cmd_node.hpp"

#include <unistd.h>

#include <csignal>
#include <iostream>

#include <fmt/format.h>
#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/node_agent.hpp"
#include "messages/messages.hpp"
#include "run/net_address.hpp"
#include "run/options.hpp"
#include "run/sysinfo.hpp"
#include "src/cluster_auth.hpp"
#include "src/train_loop.hpp"

namespace cllm {

namespace {

volatile std::sig_atomic_t g_node_signals = 0;
StopToken* g_node_stop = nullptr;
void on_node_signal(int sig) {
  if (++g_node_signals > 1) _exit(128 + sig);  // a second signal: leave at once
  if (g_node_stop) g_node_stop->request();
}

struct NodeArgs {
  std::string join, key_file;
  int heartbeat_ms = 500;
  double connection_timeout = 5;
  bool help = false;
  NodeOptions opt;
};

cli::OptionTable node_options(NodeArgs& a) {
  using cli::to_double;
  using cli::to_int;
  cli::OptionTable t;
  t.add("--join", "HOST:PORT", "the root to join (cllm train --listen)", "",
        [&a](const std::string& v) { a.join = v; });
  t.add("--cluster-key", "FILE", "the cluster's shared secret (the root's file)", "none",
        [&a](const std::string& v) { a.key_file = v; });
  t.add("--spheres", "N", "spheres of this node", std::to_string(a.opt.spheres) + " (cores)",
        [&a](const std::string& v) { a.opt.spheres = int(to_int("--spheres", v, 1, 1000000)); });
  t.add("--fanout", "N", "children per sphere", "12",
        [&a](const std::string& v) { a.opt.fanout = int(to_int("--fanout", v, 1, 1000000)); });
  t.add("--threads", "N", "CAF scheduler threads", std::to_string(a.opt.threads) + " (cores)",
        [&a](const std::string& v) { a.opt.threads = int(to_int("--threads", v, 1, 4096)); });
  t.add("--placement", "KIND", "bfs or leaves (see cllm train --help)", "bfs",
        [&a](const std::string& v) { a.opt.placement = parse_placement(v); });
  t.add("--node-id", "ID", "this node's name in the cluster (unique)", "HOST-PID",
        [&a](const std::string& v) { a.opt.node_id = v; });
  t.add("--reconnect-timeout", "SECONDS", "keep dialing a root that went away this long", "300",
        [&a](const std::string& v) {
          a.opt.reconnect_timeout_s = to_double("--reconnect-timeout", v);
        });
  t.add("--heartbeat-ms", "N", "network heartbeat interval", "500", [&a](const std::string& v) {
    a.heartbeat_ms = int(to_int("--heartbeat-ms", v, 10, 60000));
  });
  t.add(
      "--connection-timeout", "SECONDS", "a peer silent this long is lost", "5",
      [&a](const std::string& v) { a.connection_timeout = to_double("--connection-timeout", v); });
  t.add("--help,-h", "", "show this help", "", [&a](const std::string&) { a.help = true; });
  return t;
}

struct NodeConfig : caf::actor_system_config {
  NodeConfig(const NodeArgs& a) {
    register_messages(*this);
    load<caf::io::middleman>();
    set("scheduler.max-threads", a.opt.threads);
    set("middleman.heartbeat-interval", caf::timespan{std::chrono::milliseconds(a.heartbeat_ms)});
    set("middleman.connection-timeout",
        caf::timespan{std::chrono::milliseconds(int64_t(a.connection_timeout * 1000))});
  }
};

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

// Waits for the agent to end (asking it to leave on SIGINT/SIGTERM); returns the exit code.
int run_agent(caf::actor_system& sys, const NodeOptions& opt) {
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
    while (!done) {
      self->receive([&](caf::down_msg& dm) { reason = dm.reason, done = true; },
                    caf::after(std::chrono::milliseconds(100)) >>
                        [&] {
                          if (stop.requested() && !asked) request_leave(agent), asked = true;
                        });
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
  if (!(a.opt.reconnect_timeout_s >= 0) || !(a.connection_timeout > 0))
    throw cli::UsageError("--reconnect-timeout and --connection-timeout must be positive");
  a.opt.node_host = host_name();
  if (a.opt.node_id.empty()) a.opt.node_id = fmt::format("{}-{}", a.opt.node_host, ::getpid());
  // A test-only stand-in for a machine whose numerics differ (see src/fingerprint.hpp).
  a.opt.perturb_probe = std::getenv("CLLM_TEST_PERTURB_PROBE") != nullptr;
  Topology(a.opt.spheres, a.opt.fanout);  // validates the shape before dialing
  NodeConfig cfg(a);
  caf::actor_system sys{cfg};
  std::cout << fmt::format("cllm node: {} spheres, fan-out {}, {} threads; dialing {}:{}\n",
                           a.opt.spheres, a.opt.fanout, a.opt.threads, a.opt.host, a.opt.port)
            << std::flush;
  return run_agent(sys, a.opt);
}

}  // namespace cllm
