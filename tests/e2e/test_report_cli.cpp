// End-to-end tests of `cllm report`, `cllm serve` and `cllm train --serve` as a user runs them
// (bad input, where files go), and of what the trainer writes for the run page: per-step fault
// counts, checkpoints written and the step a resumed run continued from.
#include <catch2/catch.hpp>

#include <regex>

#include "cli_util.hpp"

using namespace e2e;

namespace {

void check_one_line_error(const Result& r, const std::string& needle) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.code == 2);
  const auto lines = r.err_lines();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].rfind("cllm: error: ", 0) == 0);
  CHECK(contains(lines[0], needle));
}

int printed_port(const std::string& out) {
  static const std::regex re(R"(http://127\.0\.0\.1:([0-9]+)/)");
  std::smatch m;
  return std::regex_search(out, m, re) ? std::stoi(m[1].str()) : 0;
}

}  // namespace

TEST_CASE("report and serve: bad input gets exit 2 and one line", "[e2e][report]") {
  TempDir tmp;
  const std::string missing = tmp / "no-such-run";
  const std::string empty = tmp / "empty";
  fs::create_directories(empty);
  const std::string file = tmp / "file.txt";
  write_file(file, "x");
  check_one_line_error(run_cli({"report"}), "needs a run folder");
  check_one_line_error(run_cli({"report", missing}), "there is no run folder");
  check_one_line_error(run_cli({"report", file}), "is not a folder");
  check_one_line_error(run_cli({"report", empty}), "is not a run folder");
  // Several folders are a comparison (tests/e2e/test_compare_cli.cpp), which needs --out.
  check_one_line_error(run_cli({"report", empty, empty}), "needs --out FILE");
  check_one_line_error(run_cli({"report", empty, "--bogus"}), "--bogus");
  check_one_line_error(run_cli({"serve"}), "needs a run folder");
  check_one_line_error(run_cli({"serve", missing}), "there is no run folder");
  check_one_line_error(run_cli({"serve", empty, "--port", "70000"}), "--port");
  check_one_line_error(run_cli({"serve", empty, "--port", "x"}), "--port");
  check_one_line_error(run_cli({"serve", empty, "--host", "256.1.1.1", "--port", "0"}),
                       "cannot listen on 256.1.1.1");
  check_one_line_error(run_cli(quick_train(tmp / "t") + Args{"--serve", "-1"}), "--serve");
  CHECK(!fs::exists(tmp / "t"));
}

TEST_CASE("report: written next to the run, or where --out says", "[e2e][report]") {
  TempDir tmp;
  const std::string dir = tmp / "run";
  REQUIRE(run_cli(quick_train(dir)).code == 0);
  const Result r = run_cli({"report", dir});
  INFO(r.out << r.err);
  CHECK(r.code == 0);
  CHECK(contains(r.out, "wrote " + dir + "/report.html"));
  CHECK(contains(r.out, "6 steps"));
  CHECK(fs::file_size(fs::path(dir) / "report.html") > 10000);
  const Result o = run_cli({"report", dir, "--out", tmp / "elsewhere.html"});
  CHECK(o.code == 0);
  CHECK(fs::exists(tmp / "elsewhere.html"));
  // A truncated last line is told on stderr and left out; the report is still written.
  {
    std::ofstream m(fs::path(dir) / "metrics.jsonl", std::ios::app);
    m << "{\"step\": 7, \"lo";
  }
  const Result t = run_cli({"report", dir});
  CHECK(t.code == 0);
  CHECK(contains(t.err, "incomplete line"));
  CHECK(contains(t.out, "6 steps"));
}

TEST_CASE("train --serve: a port in use is refused before training", "[e2e][report]") {
  TempDir tmp;
  const std::string dir = tmp / "run";
  REQUIRE(run_cli(quick_train(dir)).code == 0);
  Background serve({"serve", dir, "--port", "0"});
  int port = 0;
  serve.wait_until([&] { return (port = printed_port(serve.out_so_far())) > 0; }, 60);
  REQUIRE(port > 0);
  const Result r = run_cli(quick_train(tmp / "other") + Args{"--serve", std::to_string(port)});
  check_one_line_error(r, "--serve: cannot listen on 127.0.0.1:" + std::to_string(port));
  CHECK(!contains(r.out, "weights sha256"));
  serve.signal(SIGTERM);
  CHECK(serve.wait(30).code == 0);
}

TEST_CASE("metrics rows: faults per step, checkpoints, resume", "[e2e][report]") {
  TempDir tmp;
  const std::string dir = tmp / "run";
  const Args args = quick_train(dir) + Args{"--spheres",
                                            "3",
                                            "--steps",
                                            "1000",
                                            "--eval-every",
                                            "0",
                                            "--sample-tokens",
                                            "0",
                                            "--checkpoint-every",
                                            "2",
                                            "--inject",
                                            "crash:sphere=1,step=2",
                                            "--inject",
                                            "crash:sphere=2,step=2",
                                            "--inject",
                                            "crash:sphere=1,step=4"};
  {
    Background bg(args);
    REQUIRE(bg.wait_until([&] { return count_newlines(fs::path(dir) / "metrics.jsonl") >= 7; }));
    bg.signal(SIGKILL);
    CHECK(bg.wait().code == 128 + SIGKILL);
  }
  auto rows = read_jsonl(fs::path(dir) / "metrics.jsonl");
  REQUIRE(rows.size() >= 7);
  for (const auto& row : rows) {
    const int64_t step = row["step"];
    INFO("step " << step << ": " << row.dump());
    // Injection steps count from 1, as the rows do. (A sphere killed at its deadline is
    // restarted too: a loaded machine may add such a restart anywhere.)
    const json f = row.value("faults", json::object());
    CHECK(f.value("restarts", 0) - f.value("deadline_kills", 0) == (step == 2   ? 2
                                                                    : step == 4 ? 1
                                                                                : 0));
    CHECK(row.contains("checkpoint") == (step % 2 == 0));
    if (step % 2 == 0) CHECK(row["checkpoint"] == ckpt_name(step));
    CHECK(row["spheres_computing"].get<int>() == 3);
    CHECK(row["fold_ms"].get<double>() > 0);
    CHECK(row["optimizer_ms"].get<double>() > 0);  // the owners' norms and AdamW, timed
    CHECK(!row.contains("resumed_from"));
  }
  const auto ckpts = checkpoint_files(fs::path(dir) / "checkpoints");
  REQUIRE(!ckpts.empty());
  const int64_t from = std::stoll(ckpts.back().substr(5, 8));
  const Result r = run_cli(args + Args{"--resume"}, 300);
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  rows = read_jsonl(fs::path(dir) / "metrics.jsonl");
  CHECK(rows.size() == 1000);
  size_t marked = 0;
  for (const auto& row : rows)
    if (row.contains("resumed_from")) {
      ++marked;
      CHECK(row["step"] == from + 1);
      CHECK(row["resumed_from"] == from);
    }
  CHECK(marked == 1);
}
