// `cllm report RUN_DIR [--out FILE]` and `cllm serve RUN_DIR [--port N] [--host H]`: option
// parsing and output only; the work is in run/.
#include "apps/cmd_report.hpp"

#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <iostream>
#include <thread>

#include <fmt/format.h>

#include "apps/cmd_compare.hpp"
#include "run/options.hpp"
#include "run/report.hpp"

namespace cllm::cli {

namespace fs = std::filesystem;

namespace {

std::string one_run_dir(const OptionTable& t, const char* cmd) {
  if (t.positionals.empty())
    throw UsageError(fmt::format("cllm {} needs a run folder (see cllm {} --help)", cmd, cmd));
  if (t.positionals.size() > 1)
    throw UsageError(fmt::format("unexpected argument '{}' (cllm {} takes one run folder)",
                                 t.positionals[1], cmd));
  const std::string dir = t.positionals[0];
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw UsageError(fmt::format("there is no run folder '{}'", dir));
  if (!fs::is_directory(dir, ec))
    throw UsageError(fmt::format("'{}' is not a folder (give a run folder)", dir));
  return dir;
}

std::string where(const run::LiveServer& srv, const std::string& host) {
  std::string s = srv.url();
  if (!run::is_loopback_host(host))
    s += fmt::format(" (on {}: anyone who can reach this machine can read the run)", host);
  return s;
}

}  // namespace

int cmd_report(const std::vector<std::string>& args) {
  std::string out, group_by;
  bool help = false, out_given = false;
  OptionTable t;
  t.add("--out,-o", "FILE", "where the HTML file goes", "RUN_DIR/report.html",
        [&](const std::string& v) { out = v, out_given = true; });
  t.add("--group-by", "SETTING", "several runs: a band per value of this setting (e.g. lr)", "",
        [&](const std::string& v) { group_by = v; });
  t.add("--help,-h", "", "show this help", "", [&](const std::string&) { help = true; });
  t.parse(args);
  if (help) {
    std::cout << "usage: cllm report RUN_DIR [--out FILE]\n\nWrites one self-contained HTML file "
                 "of a run (finished or in progress): loss, throughput, the sphere tree, fault "
                 "events, settings and sample. It loads nothing from anywhere.\n\n"
                 "       cllm report RUN_A RUN_B ... [--group-by SETTING] --out FILE\n\nCompares "
                 "runs on one page: curves overlaid against the step and training time, the "
                 "settings that differ, a summary row per run, bands per group, and the first "
                 "step where the weights differ.\n"
              << t.help();
    return 0;
  }
  if (out_given && out.empty()) throw UsageError("option --out needs a file path, got ''");
  if (t.positionals.size() > 1 || !group_by.empty())
    return report_compare(t.positionals, group_by, out);
  const std::string dir = one_run_dir(t, "report");
  if (!out_given) out = (fs::path(dir) / "report.html").string();
  run::ReportResult r;
  try {
    r = run::write_report(dir, out);
  } catch (const run::RunFolderError& e) {
    throw UsageError(e.what());
  }
  for (const auto& n : r.notices) std::cerr << "cllm report: note: " << n << "\n";
  std::cout << fmt::format("wrote {} ({:.1f} KB, {} steps)\n", r.path, double(r.bytes) / 1024.0,
                           r.rows);
  return 0;
}

int cmd_serve(const std::vector<std::string>& args) {
  run::ServeOptions so;
  std::string group_by;
  bool help = false;
  OptionTable t;
  t.add("--port,-p", "N", "TCP port (0 = any free port)", "8080",
        [&](const std::string& v) { so.port = int(to_int("--port", v, 0, 65535)); });
  t.add("--host", "H",
        "address to listen on; anything but loopback makes the run readable by "
        "others",
        "127.0.0.1", [&](const std::string& v) { so.host = v; });
  t.add("--group-by", "SETTING", "several runs: a band per value of this setting (e.g. lr)", "",
        [&](const std::string& v) { group_by = v; });
  t.add("--help,-h", "", "show this help", "", [&](const std::string&) { help = true; });
  t.parse(args);
  if (help) {
    std::cout << "usage: cllm serve RUN_DIR [--port N] [--host H]\n\nServes a live page of a "
                 "run (in progress or finished) that updates about once a second. Read-only; "
                 "loopback unless --host says otherwise. Ctrl-C stops it.\n\n"
                 "       cllm serve RUN_A RUN_B ... | FOLDER_OF_RUNS [--group-by SETTING]\n\n"
                 "Serves the compare page of several runs (see cllm report --help), live; a "
                 "folder of runs shows new runs as they start.\n"
              << t.help();
    return 0;
  }
  auto several = serve_source(t.positionals, group_by);  // null: one run
  const std::string dir = several ? std::string() : one_run_dir(t, "serve");
  if (so.host.empty()) throw UsageError("option --host needs an address");
  // SIGINT/SIGTERM are taken by sigwait below: block them before any thread starts.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::unique_ptr<run::LiveServer> srv;
  try {
    srv = several ? std::make_unique<run::LiveServer>(std::move(several), so)
                  : std::make_unique<run::LiveServer>(dir, so);
  } catch (const run::ServeError& e) {
    throw UsageError(e.what());
  }
  std::cout << "cllm serve: live page of " << (dir.empty() ? "the runs" : dir) << " at "
            << where(*srv, so.host) << " (Ctrl-C stops)" << std::endl;
  int sig = 0;
  sigwait(&set, &sig);
  // Read-only, so nothing is lost by leaving at once. The server is stopped gracefully when its
  // threads let it; a request thread stuck in a read (a hung network mount) must not keep the
  // process, so the stop gets a moment and then the process leaves without it.
  std::promise<void> stopped;
  std::future<void> done = stopped.get_future();
  std::thread stopper([&srv, &stopped] {
    srv->stop();
    stopped.set_value();
  });
  if (done.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
    std::cout << "cllm serve: stopped (a request thread was still busy)" << std::endl;
    std::_Exit(0);
  }
  stopper.join();
  return 0;
}

std::unique_ptr<run::LiveServer> serve_training(const std::string& run_dir, const std::string& host,
                                                int port, std::ostream& out) {
  run::ServeOptions so;
  so.host = host;
  so.port = port;
  so.threads = 2;
  so.low_priority = true;  // the training loop comes first
  try {
    auto srv = std::make_unique<run::LiveServer>(run_dir, so);
    out << "live page: " << where(*srv, host) << std::endl;
    return srv;
  } catch (const run::ServeError& e) {
    throw UsageError(std::string("--serve: ") + e.what());
  }
}

}  // namespace cllm::cli
