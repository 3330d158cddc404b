// End-to-end tests of comparing runs: the weights fingerprints in metrics.jsonl, `cllm diff`
// (same bits for any sphere count or resume; the first step where settings make runs part) and
// `cllm runs`.
#include <catch2/catch.hpp>

#include <cstdlib>

#include "cli_util.hpp"

#ifndef CLLM_BENCH_SYNC
#error "CLLM_BENCH_SYNC (path of cllm-bench-sync) must be defined by the build"
#endif

using namespace e2e;

namespace {

Args train(const std::string& dir, const Args& more = {}) {
  return quick_train(dir) + Args{"--sample-tokens", "0", "--steps", "12", "--eval-every", "6"} +
         more;
}

// Removes "key": from every row of metrics.jsonl (a run of an earlier version).
void strip_key(const std::string& dir, const std::string& key) {
  std::string out;
  for (auto row : read_jsonl(fs::path(dir) / "metrics.jsonl")) {
    row.erase(key);
    out += row.dump() + "\n";
  }
  write_file(fs::path(dir) / "metrics.jsonl", out);
}

}  // namespace

TEST_CASE("fingerprints: every row by default, every N with --fingerprint-every", "[e2e][diff]") {
  TempDir tmp;
  REQUIRE(run_cli(train(tmp / "a")).code == 0);
  const auto rows = read_jsonl(fs::path(tmp / "a") / "metrics.jsonl");
  REQUIRE(rows.size() == 12);
  const json config = read_json(fs::path(tmp / "a") / "config.json");
  CHECK(config["settings"]["fingerprint-every"] == 1);
  for (const auto& row : rows) {
    INFO(row.dump());
    REQUIRE(row.contains("weights_fp"));
    CHECK(row["weights_fp"].get<std::string>().size() == 16);
    // tiny: 2 blocks of 12 tensors, embeddings and the final LayerNorm: 28 tensors, 8 hex each.
    CHECK(row["tensors_fp"].get<std::string>().size() == 28 * 8);
    // The system figures of the step.
    CHECK(row["cpu_s"].get<double>() > 0);
    CHECK(row["rss_mb"].get<double>() > 0);
  }
  // Every step changes the weights.
  for (size_t i = 1; i < rows.size(); ++i)
    CHECK(rows[i]["weights_fp"] != rows[i - 1]["weights_fp"]);

  REQUIRE(run_cli(train(tmp / "b", {"--fingerprint-every", "5"})).code == 0);
  std::vector<int64_t> steps;
  for (const auto& row : read_jsonl(fs::path(tmp / "b") / "metrics.jsonl"))
    if (row.contains("weights_fp")) {
      steps.push_back(row["step"]);
      CHECK(row["weights_fp"] == rows[size_t(row["step"].get<int64_t>()) - 1]["weights_fp"]);
    }
  CHECK(steps == std::vector<int64_t>{5, 10, 12});  // and always the last step
  for (const char* bad : {"0", "-1", "x"}) {
    const Result r = run_cli(train(tmp / "c", {"--fingerprint-every", bad}));
    CHECK(r.code == 2);
    CHECK(contains(r.err, "--fingerprint-every"));
  }
}

TEST_CASE("diff: same seed, other sphere counts and backends: identical", "[e2e][diff]") {
  TempDir tmp;
  REQUIRE(run_cli(train(tmp / "one", {"--spheres", "1", "--threads", "1"})).code == 0);
  REQUIRE(run_cli(train(tmp / "five", {"--spheres", "5", "--fanout", "2"})).code == 0);
  REQUIRE(run_cli(train(tmp / "mutex", {"--backend", "mutex", "--spheres", "3"})).code == 0);
  for (const char* other : {"five", "mutex"}) {
    const Result r = run_cli({"diff", tmp / "one", tmp / other});
    INFO(r.out << r.err);
    CHECK(r.code == 0);
    CHECK(contains(r.out, "identical through step 12 (12 steps compared)"));
    CHECK(contains(r.out, "setting spheres: 1 vs "));  // what differs is said too
  }
}

TEST_CASE("diff: --lr changed parts at step 1, and names the tensors", "[e2e][diff]") {
  TempDir tmp;
  REQUIRE(run_cli(train(tmp / "a")).code == 0);
  REQUIRE(run_cli(train(tmp / "b", {"--lr", "0.002"})).code == 0);
  const Result r = run_cli({"diff", tmp / "a", tmp / "b"});
  INFO(r.out << r.err);
  CHECK(r.code == 1);
  CHECK(contains(r.out, "first difference at step 1"));
  CHECK(contains(r.out, "tensors that differ (28): wte.weight, wpe.weight"));
  CHECK(contains(r.out, "setting lr: 0.001 vs 0.002"));

  // With fingerprints every 5 steps, the difference is located within the steps between two.
  REQUIRE(run_cli(train(tmp / "c", {"--lr", "0.002", "--fingerprint-every", "5"})).code == 0);
  const Result r2 = run_cli({"diff", tmp / "a", tmp / "c"});
  INFO(r2.out << r2.err);
  CHECK(r2.code == 1);
  CHECK(contains(r2.out, "first difference at step 5"));
  CHECK(contains(r2.out, "parted somewhere in steps 1 to 5"));
}

TEST_CASE("diff: a resumed run is identical to the uninterrupted one", "[e2e][diff]") {
  TempDir tmp;
  const Args more = {"--steps", "20", "--batch", "16"};
  REQUIRE(run_cli(train(tmp / "whole", more + Args{"--checkpoint-every", "0"})).code == 0);
  const std::string dir = tmp / "resumed";
  REQUIRE(run_cli(train(dir, more + Args{"--checkpoint-every", "4", "--keep", "10"})).code == 0);
  // As after a crash past step 8: the checkpoints after it are gone; --resume recomputes steps
  // 9 to 20 (on another tree) and rewrites their rows.
  for (int64_t s : {12, 16, 20}) fs::remove(fs::path(dir) / "checkpoints" / ckpt_name(s));
  const Result r = run_cli(train(dir, more + Args{"--resume", "--spheres", "3"}));
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  REQUIRE(contains(r.out + r.err, "(step 8)"));
  const Result d = run_cli({"diff", tmp / "whole", dir});
  INFO(d.out << d.err);
  CHECK(d.code == 0);
  CHECK(contains(d.out, "identical through step 20 (20 steps compared)"));
}

TEST_CASE("diff: bad input is exit 2 with one line", "[e2e][diff]") {
  TempDir tmp;
  REQUIRE(run_cli(train(tmp / "a")).code == 0);
  REQUIRE(run_cli(train(tmp / "b")).code == 0);
  fs::create_directories(tmp / "empty");
  const auto bad = [&](const Args& args, const std::string& says) {
    const Result r = run_cli(args);
    INFO(describe(args) << "\n" << r.out << r.err);
    CHECK(r.code == 2);
    CHECK(r.err_lines().size() == 1);
    CHECK(contains(r.err, says));
  };
  bad({"diff", tmp / "a"}, "needs two run folders");
  bad({"diff", tmp / "a", tmp / "b", tmp / "a"}, "needs two run folders");
  bad({"diff", tmp / "a", tmp / "missing"}, "there is no run folder");
  bad({"diff", tmp / "a", tmp / "empty"}, "no metrics.jsonl");
  strip_key(tmp / "b", "weights_fp");
  bad({"diff", tmp / "a", tmp / "b"}, "has no weights fingerprints");
  const Result help = run_cli({"diff", "--help"});
  CHECK(help.code == 0);
  CHECK(contains(help.out, "0 identical, 1 they differ, 2 bad input"));
}

TEST_CASE("runs: lists the runs of a folder", "[e2e][runs]") {
  TempDir tmp;
  const std::string all = tmp / "runs";
  fs::create_directories(all);
  REQUIRE(run_cli(train(all + "/first")).code == 0);
  REQUIRE(run_cli(train(all + "/second", {"--lr", "0.002", "--steps", "7"})).code == 0);
  // A run killed before its end: no summary.json.
  REQUIRE(run_cli(train(all + "/third")).code == 0);
  fs::remove(fs::path(all) / "third" / "summary.json");
  fs::create_directories(fs::path(all) / "not-a-run");

  const Result r = run_cli({"runs", all, "--json"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  const json list = json::parse(r.out);
  REQUIRE(list.size() == 3);
  std::map<std::string, json> by_name;
  for (const auto& e : list) by_name[e["name"]] = e;
  const json first_summary = read_json(fs::path(all) / "first" / "summary.json");
  CHECK(by_name["first"]["status"] == "finished");
  CHECK(by_name["first"]["steps"] == 12);
  CHECK(by_name["first"]["final_loss"] == first_summary["final_loss"]);
  CHECK(by_name["first"]["tokens_per_s"] == first_summary["tokens_per_s"]);
  CHECK(by_name["first"]["tokenizer"] == "byte");
  CHECK(contains(by_name["first"]["model"].get<std::string>(), "tiny"));
  CHECK(by_name["second"]["steps"] == 7);
  CHECK(by_name["third"]["status"] == "incomplete");
  CHECK(by_name["third"]["steps"] == 12);

  const Result text = run_cli({"runs", all});
  INFO(text.out << text.err);
  CHECK(text.code == 0);
  CHECK(split_lines(text.out).size() == 4);  // a header and one line per run
  CHECK(contains(text.out, "incomplete"));
  // One run folder lists itself.
  CHECK(json::parse(run_cli({"runs", all + "/first", "--json"}).out).size() == 1);
  CHECK(run_cli({"runs", tmp / "missing"}).code == 2);
}

TEST_CASE("report of several runs: bad input is exit 2, the runs' files are never replaced",
          "[e2e][report][compare]") {
  TempDir tmp;
  const std::string a = tmp / "a", b = tmp / "b";
  REQUIRE(run_cli(train(a)).code == 0);
  REQUIRE(run_cli(train(b, {"--lr", "0.002"})).code == 0);
  fs::create_directories(tmp / "empty");
  const auto before = snapshot(a);
  const auto bad = [&](const Args& args, const std::string& says) {
    const Result r = run_cli(args);
    INFO(describe(args) << "\n" << r.out << r.err);
    CHECK(r.code == 2);
    CHECK(r.err_lines().size() == 1);
    CHECK(contains(r.err, says));
  };
  bad({"report", a, b}, "needs --out FILE");
  bad({"report", a, tmp / "empty", "--out", tmp / "x.html"}, "is not a run folder");
  bad({"report", a, tmp / "missing", "--out", tmp / "x.html"}, "there is no run folder");
  bad({"report", a, b, "--group-by", "no-such-setting", "--out", tmp / "x.html"},
      "none of the runs has that setting");
  for (const std::string& f : std::vector<std::string>{
           "metrics.jsonl", "config.json", "summary.json", "checkpoints/" + ckpt_name(12)})
    bad({"report", a, b, "--out", a + "/" + f}, "would replace a file of the run");
  bad({"report", a, b, "--out", tmp / "empty"}, "is not a regular file");
  bad({"serve", a, tmp / "missing", "--port", "0"}, "there is no run folder");
  CHECK(snapshot(a) == before);
  CHECK(!fs::exists(tmp / "x.html"));

  // A good one: the page is written, one run with --group-by is a comparison too.
  const Result ok = run_cli({"report", a, b, "--out", tmp / "ab.html"});
  INFO(ok.out << ok.err);
  CHECK(ok.code == 0);
  CHECK(contains(ok.out, "2 runs"));
  const std::string page = read_file(tmp / "ab.html");
  CHECK(contains(page, "data-mode=\"compare\""));
  CHECK(contains(page, "Content-Security-Policy"));
  CHECK(run_cli({"report", a, "--group-by", "lr", "--out", tmp / "g.html"}).code == 0);
  // One run without --group-by is still the single-run report.
  REQUIRE(run_cli({"report", a, "--out", tmp / "one.html"}).code == 0);
  CHECK(contains(read_file(tmp / "one.html"), "data-mode=\"report\""));
}

TEST_CASE("cllm-bench-sync --runs-dir: run folders that report and diff read", "[e2e][diff]") {
  TempDir tmp;
  const std::string runs = tmp / "sync";
  const std::string out = tmp / "bench.out";
  const std::string cmd = std::string("timeout -s KILL 300 ") + CLLM_BENCH_SYNC +
                          " --models tiny --workers 1,2 --steps 3 --warmup 1 --backends "
                          "actors-f2,mutex,barrier --runs-dir " +
                          runs + " > " + out + " 2>&1";
  const int status = std::system(cmd.c_str());
  INFO(read_file(out));
  REQUIRE(status == 0);
  const Result list = run_cli({"runs", runs, "--json"});
  REQUIRE(list.code == 0);
  const json entries = json::parse(list.out);
  CHECK(entries.size() == 6);  // 3 backends x 2 worker counts
  for (const auto& e : entries) {
    CHECK(e["status"] == "finished");
    CHECK(e["steps"] == 4);  // the warm-up step is a row too
  }
  const auto rows = read_jsonl(fs::path(runs) / "tiny-mutex-w2" / "metrics.jsonl");
  REQUIRE(rows.size() == 4);
  for (const auto& row : rows) {
    CHECK(row.contains("weights_fp"));
    CHECK(row["compute_ms"].get<double>() > 0);
    CHECK(row["spheres_computing"] == 2);
  }
  // Every backend and worker count computes the same bits.
  const Result d = run_cli({"diff", runs + "/tiny-actors-f2-w1", runs + "/tiny-barrier-w2"});
  INFO(d.out << d.err);
  CHECK(d.code == 0);
  CHECK(contains(d.out, "identical through step 4"));
  // The compare page of the experiment, grouped by backend.
  const Result rep =
      run_cli({"report", runs + "/tiny-actors-f2-w1", runs + "/tiny-actors-f2-w2",
               runs + "/tiny-mutex-w1", runs + "/tiny-mutex-w2", runs + "/tiny-barrier-w1",
               runs + "/tiny-barrier-w2", "--group-by", "backend", "--out", tmp / "sync.html"});
  INFO(rep.out << rep.err);
  CHECK(rep.code == 0);
  const std::string page = read_file(tmp / "sync.html");
  CHECK(contains(page, "\"time_split\":{\"compute\":"));
}

TEST_CASE("diff: crashes, and a cluster of a root and a node, against one process: identical",
          "[e2e][diff]") {
  TempDir tmp;
  const Args more = {"--steps", "16", "--batch", "16"};
  REQUIRE(run_cli(train(tmp / "one", more + Args{"--spheres", "2"})).code == 0);
  // Crashed spheres are restarted and their shards computed again.
  const Result crashed = run_cli(
      train(tmp / "crashed", more + Args{"--spheres", "3", "--inject", "crash:sphere=1,step=2",
                                         "--inject", "crash:sphere=2,step=5"}));
  INFO(crashed.out << crashed.err);
  REQUIRE(crashed.code == 0);
  const Result d1 = run_cli({"diff", tmp / "one", tmp / "crashed"});
  INFO(d1.out << d1.err);
  CHECK(d1.code == 0);
  CHECK(contains(d1.out, "identical through step 16"));

  // A root with one sphere and a node with two, over loopback.
  Background root(train(tmp / "cluster", more + Args{"--spheres", "1", "--listen", "127.0.0.1:0",
                                                     "--min-nodes", "1", "--join-timeout", "30"}));
  static const std::regex re(R"(listening for nodes on 127\.0\.0\.1:([0-9]+))");
  std::string port;
  root.wait_until(
      [&] {
        std::smatch m;
        const std::string out = root.out_so_far();
        if (!std::regex_search(out, m, re)) return false;
        port = m[1].str();
        return true;
      },
      120);
  REQUIRE(!port.empty());
  Background node({"node", "--join", "127.0.0.1:" + port, "--spheres", "2", "--threads", "1"});
  const Result r = root.wait(300);
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(node.wait(120).code == 0);
  const auto rows = read_jsonl(fs::path(tmp / "cluster") / "metrics.jsonl");
  REQUIRE(!rows.empty());
  CHECK(rows.front()["bytes_sent"].get<int64_t>() > 0);  // the traffic of the step, per row
  CHECK(rows.front()["bytes_received"].get<int64_t>() > 0);
  const Result d2 = run_cli({"diff", tmp / "one", tmp / "cluster"});
  INFO(d2.out << d2.err);
  CHECK(d2.code == 0);
  CHECK(contains(d2.out, "identical through step 16"));
}
