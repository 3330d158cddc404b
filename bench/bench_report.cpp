// cllm-bench-report: how big `cllm report` files are, how long `cllm report` takes, and how long
// the page takes to open in headless Chromium (from navigation to the end of the first drawing,
// as the page measures it itself, and to the next painted frame). Runs given as folders, or a
// synthetic run of --synth STEPS steps and --spheres N spheres (written to --keep DIR or a
// temporary folder).
//
// With --train-rounds R it measures instead what the live page costs a training: R rounds of
// three runs of `cllm train` (order rotated each round): without --serve; with --serve and a
// client polling /api/run once a second as the page does (the server's own cost); with --serve
// and the page open in Chromium (server + browser on the same machine). It prints the runs'
// median tokens/s (summary.json) per round and the median of each kind.
//
//   cllm-bench-report --synth 100000 --spheres 1741 --rounds 5
//   cllm-bench-report --runs runs/x,runs/y
//   cllm-bench-report --compare 200 --synth 500     (the compare page of 200 runs)
//   cllm-bench-report --train-rounds 5 --train-steps 150
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <atomic>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>

#include "bench/bench_util.hpp"
#include "browser/cdp.hpp"
#include "browser/synth_run.hpp"

#ifndef CLLM_BIN
#error "CLLM_BIN (path of the cllm binary) must be defined by the build"
#endif

namespace fs = std::filesystem;
using namespace cllm;
using namespace cllm::bench;

namespace {

// Seconds that `cllm report ARGS` took (fails loudly on a non-zero exit).
double time_report(const std::vector<std::string>& args) {
  std::fflush(stdout);  // or the child's freopen would print our buffer again
  const auto t0 = Clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::freopen("/dev/null", "w", stdout);
    std::vector<char*> argv = {const_cast<char*>(CLLM_BIN), const_cast<char*>("report")};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(CLLM_BIN, argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("cllm report " + (args.empty() ? "" : args[0]) + " ... failed");
  return ms_between(t0, Clock::now()) / 1e3;
}

// Opens `html` in Chromium `rounds` times: the page's own ready and painted times.
void open_rounds(const std::string& html, int rounds, cdp::Browser& browser,
                 std::vector<double>& ready_ms, std::vector<double>& painted_ms) {
  for (int r = 0; r < rounds; ++r) {
    cdp::Page page(browser);
    page.navigate("file://" + html);
    if (!page.wait_for("window.cllmTiming && window.cllmTiming.painted", 120))
      throw std::runtime_error("the page did not finish drawing: " + html);
    const auto timing = page.eval("window.cllmTiming");
    ready_ms.push_back(timing["ready"].get<double>());
    painted_ms.push_back(timing["painted"].get<double>());
    const auto errors = page.console_errors();
    if (!errors.empty()) throw std::runtime_error("console error: " + errors[0]);
  }
}

void print_rounds(const std::vector<double>& write_s, const std::vector<double>& ready_ms,
                  const std::vector<double>& painted_ms) {
  std::printf("  rounds: write s");
  for (double v : write_s) std::printf(" %.3f", v);
  std::printf(" | ready ms");
  for (double v : ready_ms) std::printf(" %.0f", v);
  std::printf(" | painted ms");
  for (double v : painted_ms) std::printf(" %.0f", v);
  std::printf("\n");
}

// Starts `cllm args...` with stdout and stderr to `log`; returns its pid.
pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  std::fflush(stdout);
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::freopen(log.c_str(), "w", stdout);
    ::dup2(::fileno(stdout), 2);
    std::vector<char*> argv = {const_cast<char*>(CLLM_BIN)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(CLLM_BIN, argv.data());
    ::_exit(127);
  }
  return pid;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// One training run of kind 0 (no server), 1 (server + poller) or 2 (server + page in Chromium);
// returns summary.json's tokens_per_s.
double train_once(int kind, const std::vector<std::string>& base, const std::string& dir,
                  cdp::Browser& browser) {
  std::vector<std::string> args = base;
  args.insert(args.end(), {"--run-dir", dir});
  if (kind > 0) args.insert(args.end(), {"--serve", "0"});
  const std::string log = dir + ".log";
  const pid_t pid = spawn(args, log);
  auto running = [&] { return ::waitpid(pid, nullptr, WNOHANG) == 0; };
  int port = 0;
  while (kind > 0 && port == 0) {
    const std::string out = slurp(log);
    const size_t at = out.find("live page: http://127.0.0.1:");
    if (at != std::string::npos) port = std::atoi(out.c_str() + at + 28);
    if (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (port == 0 && !running()) throw std::runtime_error("cllm train ended early: " + out);
  }
  std::atomic<bool> done{false};
  std::thread poller;
  std::unique_ptr<cdp::Page> page;
  if (kind == 1) {
    poller = std::thread([&] {  // as the page polls: once a second, with the last version
      httplib::Client c("127.0.0.1", port);
      std::string version;
      while (!done) {
        if (auto r = c.Get(("/api/run" + (version.empty() ? "" : "?v=" + version)).c_str()))
          if (r->status == 200) {
            const auto j = nlohmann::json::parse(r->body, nullptr, false);
            if (j.is_object() && j.contains("version")) version = j["version"];
          }
        for (int i = 0; i < 10 && !done; ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  } else if (kind == 2) {
    page = std::make_unique<cdp::Page>(browser);
    page->navigate("http://127.0.0.1:" + std::to_string(port) + "/");
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  done = true;
  if (poller.joinable()) poller.join();
  if (page) {
    const auto renders = page->eval("+(document.body.dataset.renders || 0)");
    if (renders.get<int>() < 2) throw std::runtime_error("the live page did not update");
    page.reset();
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("cllm train failed: " + slurp(log));
  return nlohmann::json::parse(slurp(dir + "/summary.json"))["tokens_per_s"].get<double>();
}

struct Options {
  int synth_steps = 0, spheres = 1741, rounds = 5, compare = 0;
  std::string runs, keep, model = "small";
  int train_rounds = 0, train_steps = 150, train_spheres = 2;
};

Options parse(int argc, char** argv) {
  Options o;
  cli::OptionTable t;
  add_int(t, "--synth", "steps of a synthetic run to add (0 = none)", o.synth_steps, 0);
  add_int(t, "--spheres", "spheres of the synthetic run", o.spheres, 1);
  add_int(t, "--compare",
          "N synthetic runs (of --synth steps, 500 by default) on one compare page, grouped by lr "
          "(0 = none)",
          o.compare, 0);
  add_int(t, "--rounds", "report writes and page opens per run (medians are printed)", o.rounds, 1);
  t.add("--runs", "DIRS", "comma-separated run folders", "", [&](auto& v) { o.runs = v; });
  t.add("--keep", "DIR", "write the synthetic run here (kept)", "", [&](auto& v) { o.keep = v; });
  add_int(t, "--train-rounds", "rounds of the live-page cost of a training (0 = skip)",
          o.train_rounds, 0);
  add_int(t, "--train-steps", "steps of each training run", o.train_steps, 1);
  add_int(t, "--train-spheres", "spheres of each training run", o.train_spheres, 1);
  t.add("--model", "NAME", "model preset of the training runs", o.model,
        [&](auto& v) { o.model = v; });
  parse_options(t, argc, argv, "usage: cllm-bench-report [options]\n");
  return o;
}

// What a live page costs a training: tokens/s without a server, with a poller, with the page
// open in Chromium, the three kinds rotated through the rounds.
void bench_live_cost(const Options& o) {
  char tt[] = "/tmp/cllm-bench-live-XXXXXX";
  const std::string scratch_t = ::mkdtemp(tt);
  {
    cdp::Browser browser(scratch_t);
    const std::vector<std::string> base = {"train",
                                           "--model",
                                           o.model,
                                           "--steps",
                                           std::to_string(o.train_steps),
                                           "--spheres",
                                           std::to_string(o.train_spheres),
                                           "--eval-every",
                                           "0",
                                           "--checkpoint-every",
                                           "0",
                                           "--sample-tokens",
                                           "0",
                                           "--progress",
                                           "plain"};
    const char* names[3] = {"no server", "server + poller", "server + Chromium page"};
    std::vector<double> tps[3];
    for (int r = 0; r < o.train_rounds; ++r) {
      std::printf("round %d:", r + 1);
      for (int k = 0; k < 3; ++k) {
        const int kind = (k + r) % 3;
        const std::string dir = fmt::format("{}/r{}k{}", scratch_t, r, kind);
        const double v = train_once(kind, base, dir, browser);
        tps[kind].push_back(v);
        std::printf("  %s %.0f", names[kind], v);
        std::fflush(stdout);
      }
      std::printf("\n");
    }
    for (int k = 0; k < 3; ++k)
      std::printf("%-24s median %.0f tokens/s (%+.1f%% vs no server)\n", names[k], median(tps[k]),
                  100.0 * (median(tps[k]) / median(tps[0]) - 1));
  }
  std::error_code ec;
  fs::remove_all(scratch_t, ec);
}

size_t count_lines(const std::string& path) {
  size_t lines = 0;
  std::ifstream m(path);
  std::string l;
  while (std::getline(m, l)) ++lines;
  return lines;
}

// Writes the report of `dir` and opens it in Chromium, `rounds` times each; prints the medians.
void bench_report_of(const std::string& dir, const std::string& scratch, int rounds,
                     cdp::Browser& browser) {
  const std::string out = scratch + "/report.html";
  std::vector<double> write_s, ready_ms, painted_ms;
  for (int r = 0; r < rounds; ++r) write_s.push_back(time_report({dir, "--out", out}));
  const auto bytes = fs::file_size(out);
  open_rounds(out, rounds, browser, ready_ms, painted_ms);
  const size_t lines = count_lines(dir + "/metrics.jsonl");
  std::printf("%-40s %9zu %8.1fMB %7.0fKB %10.3f %10.0f %10.0f\n",
              fs::path(dir).filename().string().c_str(), lines,
              double(fs::file_size(dir + "/metrics.jsonl")) / 1048576.0, double(bytes) / 1024.0,
              median(write_s), median(ready_ms), median(painted_ms));
  print_rounds(write_s, ready_ms, painted_ms);
}

// The compare page of `n` synthetic runs of `steps` steps (13 spheres, four learning rates),
// grouped by lr: written and opened `rounds` times each; prints the medians.
void bench_compare(int n, int steps, const std::string& scratch, int rounds,
                   cdp::Browser& browser) {
  const double lrs[] = {1e-3, 2e-3, 5e-4, 3e-3};
  std::vector<std::string> args;
  for (int i = 0; i < n; ++i) {
    const std::string dir = fmt::format("{}/cmp/run-{:04}", scratch, i);
    fs::create_directories(dir);
    synth::Options so;
    so.steps = steps, so.spheres = 13, so.seed = uint64_t(i + 1), so.eval_every = 50;
    synth::write_run(dir, so);
    auto config = nlohmann::json::parse(slurp(dir + "/config.json"));
    config["settings"]["lr"] = lrs[i % 4];
    std::ofstream(dir + "/config.json") << config.dump(2);
    args.push_back(dir);
  }
  const std::string out = scratch + "/compare.html";
  args.insert(args.end(), {"--group-by", "lr", "--out", out});
  std::vector<double> write_s, ready_ms, painted_ms;
  for (int r = 0; r < rounds; ++r) write_s.push_back(time_report(args));
  open_rounds(out, rounds, browser, ready_ms, painted_ms);
  std::printf("%-40s %9d %10s %7.0fKB %10.3f %10.0f %10.0f\n",
              fmt::format("compare: {} runs x {} steps", n, steps).c_str(), n * steps, "",
              double(fs::file_size(out)) / 1024.0, median(write_s), median(ready_ms),
              median(painted_ms));
  print_rounds(write_s, ready_ms, painted_ms);
}

int run(const Options& o) {
  if (o.train_rounds > 0) {
    bench_live_cost(o);
    if (o.runs.empty() && o.synth_steps == 0) return 0;
  }
  char templ[] = "/tmp/cllm-bench-report-XXXXXX";
  const std::string scratch = ::mkdtemp(templ);
  std::vector<std::string> dirs = split_list(o.runs);
  if (o.synth_steps > 0 && o.compare == 0) {
    const std::string dir = o.keep.empty() ? scratch + "/synth" : o.keep;
    fs::create_directories(dir);
    synth::Options so;
    so.steps = o.synth_steps;
    so.spheres = o.spheres;
    synth::write_run(dir, so);
    dirs.push_back(dir);
  }
  if (dirs.empty() && o.compare == 0) throw cli::UsageError("give --runs, --synth or --compare");
  {
    cdp::Browser browser(scratch);
    std::printf("%-40s %9s %10s %9s %10s %10s %10s\n", "run", "steps", "metrics", "report",
                "write s", "ready ms", "painted ms");
    for (const auto& dir : dirs) bench_report_of(dir, scratch, o.rounds, browser);
    if (o.compare > 0)
      bench_compare(o.compare, o.synth_steps > 0 ? o.synth_steps : 500, scratch, o.rounds, browser);
  }
  std::error_code ec;
  fs::remove_all(scratch, ec);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return bench_main("cllm-bench-report", [&] { return run(parse(argc, argv)); });
}
