// cllm-bench-report: how big `cllm report` files are, how long `cllm report` takes, and how long
// the page takes to open in headless Chromium (from navigation to the end of the first drawing,
// as the page measures it itself, and to the next painted frame). Runs given as folders, or a
// synthetic run of --synth STEPS steps and --spheres N spheres (written to --keep DIR or a
// temporary folder).
//
//   cllm-bench-report --synth 100000 --spheres 1741 --rounds 5
//   cllm-bench-report --runs runs/x,runs/y
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

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

// Seconds that `cllm report DIR --out OUT` took (fails loudly on a non-zero exit).
double time_report(const std::string& dir, const std::string& out) {
  std::fflush(stdout);  // or the child's freopen would print our buffer again
  const auto t0 = Clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::freopen("/dev/null", "w", stdout);
    ::execl(CLLM_BIN, CLLM_BIN, "report", dir.c_str(), "--out", out.c_str(), (char*)nullptr);
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("cllm report " + dir + " failed");
  return ms_between(t0, Clock::now()) / 1e3;
}

}  // namespace

int main(int argc, char** argv) {
  return bench_main("cllm-bench-report", [&] {
    int synth_steps = 0, spheres = 1741, rounds = 5;
    std::string runs, keep;
    cli::OptionTable t;
    add_int(t, "--synth", "steps of a synthetic run to add (0 = none)", synth_steps, 0);
    add_int(t, "--spheres", "spheres of the synthetic run", spheres, 1);
    add_int(t, "--rounds", "report writes and page opens per run (medians are printed)", rounds, 1);
    t.add("--runs", "DIRS", "comma-separated run folders", "", [&](auto& v) { runs = v; });
    t.add("--keep", "DIR", "write the synthetic run here (kept)", "", [&](auto& v) { keep = v; });
    parse_options(t, argc, argv, "usage: cllm-bench-report [options]\n");

    char templ[] = "/tmp/cllm-bench-report-XXXXXX";
    const std::string scratch = ::mkdtemp(templ);
    std::vector<std::string> dirs = split_list(runs);
    if (synth_steps > 0) {
      const std::string dir = keep.empty() ? scratch + "/synth" : keep;
      fs::create_directories(dir);
      synth::Options o;
      o.steps = synth_steps;
      o.spheres = spheres;
      synth::write_run(dir, o);
      dirs.push_back(dir);
    }
    if (dirs.empty()) throw cli::UsageError("give --runs or --synth");

    {
      cdp::Browser browser(scratch);
      std::printf("%-40s %9s %10s %9s %10s %10s %10s\n", "run", "steps", "metrics", "report",
                  "write s", "ready ms", "painted ms");
      for (const auto& dir : dirs) {
        const std::string out = scratch + "/report.html";
        std::vector<double> write_s, ready_ms, painted_ms;
        for (int r = 0; r < rounds; ++r) write_s.push_back(time_report(dir, out));
        const auto bytes = fs::file_size(out);
        for (int r = 0; r < rounds; ++r) {
          cdp::Page page(browser);
          page.navigate("file://" + out);
          if (!page.wait_for("window.cllmTiming && window.cllmTiming.painted", 60))
            throw std::runtime_error("the page did not finish drawing: " + out);
          const auto timing = page.eval("window.cllmTiming");
          ready_ms.push_back(timing["ready"].get<double>());
          painted_ms.push_back(timing["painted"].get<double>());
          const auto errors = page.console_errors();
          if (!errors.empty()) throw std::runtime_error("console error: " + errors[0]);
        }
        size_t lines = 0;
        {
          std::ifstream m(dir + "/metrics.jsonl");
          std::string l;
          while (std::getline(m, l)) ++lines;
        }
        std::printf("%-40s %9zu %8.1fMB %7.0fKB %10.3f %10.0f %10.0f\n",
                    fs::path(dir).filename().string().c_str(), lines,
                    double(fs::file_size(dir + "/metrics.jsonl")) / 1048576.0,
                    double(bytes) / 1024.0, median(write_s), median(ready_ms), median(painted_ms));
        std::printf("  rounds: write s");
        for (double v : write_s) std::printf(" %.3f", v);
        std::printf(" | ready ms");
        for (double v : ready_ms) std::printf(" %.0f", v);
        std::printf(" | painted ms");
        for (double v : painted_ms) std::printf(" %.0f", v);
        std::printf("\n");
      }
    }
    std::error_code ec;
    fs::remove_all(scratch, ec);
    return 0;
  });
}
