// The report and the live page in a real browser (Debian's headless Chromium, driven over the
// DevTools protocol): a short real run with injected crashes, a long synthetic run (drawn
// downsampled), a live training with --serve, and a served folder that breaks under the page.
// Chromium missing is a failure, not a skip. Screenshots go to CLLM_BROWSER_OUT.
#include <catch2/catch.hpp>

#include <chrono>
#include <iostream>
#include <regex>

#include "browser/cdp.hpp"
#include "browser/synth_run.hpp"
#include "e2e/cli_util.hpp"

#ifndef CLLM_BROWSER_OUT
#error "CLLM_BROWSER_OUT (folder of the screenshots) must be defined by the build"
#endif

using namespace e2e;

namespace {

const std::string& out_dir() {
  static const std::string dir = [] {
    fs::create_directories(CLLM_BROWSER_OUT);
    return std::string(CLLM_BROWSER_OUT);
  }();
  return dir;
}

// One Chromium per test process, started on first use.
cdp::Browser& browser() {
  static TempDir scratch;
  static cdp::Browser b(scratch.str());
  return b;
}

std::string js_string(const std::string& s) {
  return json(s).dump();
}

// The settings table's text for `key` (a dotted path into config.json).
std::string setting(cdp::Page& page, const std::string& key) {
  const json v = page.eval("(() => { const r = document.querySelector('#settings tr[data-key=" +
                           js_string(key) + "] td.val'); return r ? r.textContent : null; })()");
  return v.is_string() ? v.get<std::string>() : std::string("<missing>");
}

// How the page shows a config value: strings bare, numbers as JavaScript prints them (the
// shortest round-trip form, as nlohmann::json writes them).
std::string shown(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

void no_console_errors(const cdp::Page& page) {
  const auto errors = page.console_errors();
  for (const auto& e : errors) UNSCOPED_INFO(e);
  CHECK(errors.empty());
}

// The URL that `cllm serve` or `cllm train --serve` printed (waits for it).
std::string served_url(Background& bg, const std::string& prefix) {
  static const std::regex re(R"((http://127\.0\.0\.1:[0-9]+/))");
  std::string url;
  bg.wait_until(
      [&] {
        const std::string out = bg.out_so_far();
        const size_t at = out.find(prefix);
        std::smatch m;
        const std::string rest = at == std::string::npos ? std::string() : out.substr(at);
        if (std::regex_search(rest, m, re)) url = m[1].str();
        return !url.empty();
      },
      120);
  return url;
}

std::string fmt_join(const std::vector<size_t>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out;
}

int64_t page_step(cdp::Page& page) {
  const json v = page.eval("+(document.getElementById('progress').dataset.step || 0)");
  return v.is_number() ? v.get<int64_t>() : -1;
}

}  // namespace

TEST_CASE("browser: Chromium is installed and starts", "[browser]") {
  INFO("Chromium: " << cdp::chromium_path());
  REQUIRE_NOTHROW(browser());
  cdp::Page page(browser());
  page.navigate("data:text/html,<p id=x>hi</p>");
  CHECK(page.eval("document.getElementById('x').textContent") == "hi");
}

TEST_CASE("browser: report of a short run with injected crashes", "[browser]") {
  TempDir tmp;
  const std::string dir = tmp / "run";
  const Result r =
      run_cli(quick_train(dir) + Args{"--spheres", "3", "--steps", "10", "--eval-every", "4",
                                      "--checkpoint-every", "4", "--inject",
                                      "crash:sphere=1,step=3", "--inject", "crash:sphere=2,step=6"},
              180);
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  const Result rep = run_cli({"report", dir}, 60);
  INFO(rep.out << rep.err);
  REQUIRE(rep.code == 0);
  const std::string html = dir + "/report.html";
  REQUIRE(fs::exists(html));

  const auto rows = read_jsonl(fs::path(dir) / "metrics.jsonl");
  const json config = read_json(fs::path(dir) / "config.json");
  const json summary = read_json(fs::path(dir) / "summary.json");
  const json spheres = read_json(fs::path(dir) / "spheres.json");
  REQUIRE(rows.size() == 10);
  REQUIRE(spheres.size() == 3);
  REQUIRE(summary["restarts"].get<int64_t>() >= 2);
  size_t val_rows = 0, restart_rows = 0, restart_count = 0;
  for (const auto& row : rows) {
    val_rows += row.contains("val_loss");
    if (row.contains("faults") && row["faults"].value("restarts", 0) > 0)
      ++restart_rows, restart_count += row["faults"]["restarts"].get<size_t>();
  }
  // The per-step counts add up to the run's total.
  CHECK(int64_t(restart_count) == summary["restarts"].get<int64_t>());

  cdp::Page page(browser());
  page.navigate("file://" + html);
  REQUIRE(page.wait_for("document.body.dataset.ready === '1'", 30));
  page.screenshot(out_dir() + "/report.png");
  no_console_errors(page);

  // Loss chart: one point per step (a short run is drawn in full), validation points too.
  CHECK(page.eval("document.querySelector('#chart-loss polyline.s-loss').points.length") ==
        rows.size());
  CHECK(page.eval("document.querySelector('#chart-loss polyline.s-val').points.length") ==
        val_rows);
  CHECK(page.eval("document.querySelector('#chart-lr polyline.s-lr').points.length") ==
        rows.size());
  // The tree: every sphere, and the restarted ones marked.
  CHECK(page.eval("document.querySelectorAll('#tree path.sphere').length") == spheres.size());
  for (const auto& sp : spheres) {
    const bool restarted = sp.value("restarts", 0) > 0;
    CHECK(page.eval("!!document.querySelector('#tree path.sphere.restarted[data-id=\"" +
                    std::to_string(sp["id"].get<int>()) + "\"]')") == restarted);
  }
  CHECK(page.eval("document.querySelectorAll('#spheres tr[data-id]').length") == spheres.size());
  // Fault events on the step axis: one restart marker per step with restarts.
  CHECK(page.eval("document.querySelectorAll('#chart-events .ev-restart').length") == restart_rows);
  CHECK(page.eval("document.querySelectorAll('#chart-events .ev-checkpoint').length").get<int>() >=
        2);
  // Settings as in config.json.
  for (const char* key : {"steps", "batch", "micro_batch", "lr", "seed", "warmup"})
    CHECK(setting(page, std::string("run.") + key) == shown(config["run"][key]));
  CHECK(setting(page, "run.model.d_model") == shown(config["run"]["model"]["d_model"]));
  CHECK(setting(page, "settings.spheres") == shown(config["settings"]["spheres"]));
  CHECK(setting(page, "settings.corpus") == shown(config["settings"]["corpus"]));
  CHECK(page.eval("document.getElementById('weights-hash').textContent") ==
        summary["weights_sha256"]);
}

TEST_CASE("browser: a long run is drawn downsampled with exact figures", "[browser]") {
  TempDir tmp;
  const std::string dir = tmp / "long";
  fs::create_directories(dir);
  synth::Options o;
  o.steps = 30000;
  o.spheres = 157;
  o.remote = {{3, "node-a"}, {7, "node-b"}};
  const synth::Written w = synth::write_run(dir, o);
  const Result rep = run_cli({"report", dir, "--out", tmp / "long.html"}, 120);
  INFO(rep.out << rep.err);
  REQUIRE(rep.code == 0);

  cdp::Page page(browser());
  page.navigate("file://" + tmp / "long.html");
  REQUIRE(page.wait_for("document.body.dataset.ready === '1'", 60));
  page.screenshot(out_dir() + "/report-long.png");
  no_console_errors(page);
  // 30,000 rows with distinct values: 1,000 buckets of 30, each drawn by its min and its max.
  CHECK(page.eval("document.querySelector('#chart-loss polyline.s-loss').points.length") == 2000);
  CHECK(page.eval("+document.querySelector('#chart-loss polyline.s-loss').dataset.n") == 30000);
  // The exact smallest and last loss survive downsampling.
  const json stats =
      page.eval("JSON.parse(document.getElementById('cllm-data').textContent).stats");
  CHECK(stats["loss"]["min"]["value"].get<double>() == w.loss_min);
  CHECK(stats["loss"]["min"]["step"] == w.loss_min_step);
  CHECK(stats["loss"]["last"]["value"].get<double>() == w.loss_last);
  CHECK(page.eval("document.querySelectorAll('#tree path.sphere').length") == 157);
  // Remote subtrees carry their host's name.
  CHECK(page.eval("[...document.querySelectorAll('#tree .host-label')].map(e => "
                  "e.textContent).sort().join(',')") == "node-a,node-b");
  CHECK(page.eval("document.querySelectorAll('#chart-events .ev-restart').length") ==
        w.restart_steps);
}

TEST_CASE("browser: the live page of cllm train --serve follows the run", "[browser]") {
  TempDir tmp;
  const std::string dir = tmp / "live";
  Background bg(quick_train(dir) + Args{"--steps", "100000", "--spheres", "2", "--eval-every", "50",
                                        "--checkpoint-every", "0", "--serve", "0"});
  const std::string url = served_url(bg, "live page: ");
  INFO(bg.out_so_far());
  REQUIRE(!url.empty());

  cdp::Page page(browser());
  page.navigate(url);
  REQUIRE(
      page.wait_for("document.body.dataset.ready === '1' && "
                    "+document.getElementById('progress').dataset.step > 0",
                    60));
  const int64_t first = page_step(page);
  // The page polls by itself: the step shown advances without a reload.
  REQUIRE(page.wait_for(
      "+document.getElementById('progress').dataset.step > " + std::to_string(first), 60));
  CHECK(page_step(page) > first);
  // spheres.json appears during the run.
  CHECK(page.wait_for("document.querySelectorAll('#tree path.sphere').length === 2", 60));
  CHECK(
      page.eval("document.getElementById('status').className").get<std::string>().find("running") !=
      std::string::npos);
  page.screenshot(out_dir() + "/live.png");
  no_console_errors(page);
  CHECK(bg.running());
  bg.signal(SIGINT);
  const Result r = bg.wait(120);
  CHECK(r.code == 130);
}

TEST_CASE("browser: a served folder that breaks shows a message, not a crash", "[browser]") {
  TempDir tmp;
  const std::string dir = tmp / "run";
  const Result r = run_cli(quick_train(dir), 120);
  REQUIRE(r.code == 0);
  Background bg({"serve", dir, "--port", "0"});
  const std::string url = served_url(bg, "cllm serve: ");
  INFO(bg.out_so_far());
  REQUIRE(!url.empty());

  cdp::Page page(browser());
  page.navigate(url);
  REQUIRE(page.wait_for("document.body.dataset.ready === '1'", 60));
  CHECK(page.eval("document.getElementById('status').textContent") == "finished");
  no_console_errors(page);

  // A torn last line (a run killed while writing it).
  {
    std::ofstream m(fs::path(dir) / "metrics.jsonl", std::ios::app);
    m << "{\"step\":7,\"loss\":2.5,\"l";
  }
  CHECK(page.wait_for("document.getElementById('notices').textContent.includes('incomplete line')",
                      30));
  CHECK(page_step(page) == 6);

  // The folder disappears.
  fs::rename(dir, tmp / "moved-away");
  CHECK(page.wait_for("document.getElementById('notices').textContent.includes('is gone')", 30));
  CHECK(page.eval("document.getElementById('status').textContent") == "run folder gone");
  page.screenshot(out_dir() + "/live-gone.png");
  CHECK(bg.running());
  // The server still answers.
  CHECK(page.eval("fetch('api/run').then(r => r.status)") == 200);
  bg.signal(SIGINT);
  CHECK(bg.wait(30).code == 0);
}

namespace {

// The compare page's data, as embedded.
json compare_data(cdp::Page& page) {
  return page.eval("JSON.parse(document.getElementById('cllm-data').textContent)");
}

// Texts of the cells of column `cls` in the runs table, in row order.
json runs_column(cdp::Page& page, const std::string& cls) {
  return page.eval("[...document.querySelectorAll('#runs-table tr[data-run] td." + cls +
                   "')].map(e => e.textContent)");
}

}  // namespace

TEST_CASE("browser: compare page of 3 runs: overlaid series, differing settings, bands, parting",
          "[browser][compare]") {
  TempDir tmp;
  const Args common = {"--steps", "8", "--eval-every", "4", "--sample-tokens", "0"};
  const std::string a = tmp / "a", b = tmp / "b", c = tmp / "c";
  REQUIRE(run_cli(quick_train(a) + common + Args{"--spheres", "1"}, 120).code == 0);
  REQUIRE(run_cli(quick_train(b) + common + Args{"--spheres", "3"}, 120).code == 0);
  REQUIRE(run_cli(quick_train(c) + common + Args{"--spheres", "1", "--lr", "0.002"}, 120).code ==
          0);
  const auto rows = read_jsonl(fs::path(a) / "metrics.jsonl");
  size_t val_rows = 0;
  for (const auto& r : rows) val_rows += r.contains("val_bpb");
  REQUIRE(rows.size() == 8);

  SECTION("three runs") {
    const Result rep = run_cli({"report", a, b, c, "--out", tmp / "cmp.html"}, 60);
    INFO(rep.out << rep.err);
    REQUIRE(rep.code == 0);
    cdp::Page page(browser());
    page.navigate("file://" + tmp / "cmp.html");
    REQUIRE(page.wait_for("document.body.dataset.ready === '1' && window.cllmTiming.painted", 30));
    page.screenshot(out_dir() + "/compare.png");
    no_console_errors(page);
    // Every run overlaid, against the step and against training time, every step drawn.
    const json timing = page.eval("window.cllmTiming");
    std::cout << "compare page of 3 runs x 8 steps: " << fs::file_size(tmp / "cmp.html") / 1024
              << " KB, page ready " << timing["ready"] << " ms, painted " << timing["painted"]
              << " ms\n";
    // The system figures of each step are drawn too (CPU time, resident memory).
    for (const char* chart :
         {"#c-loss-step", "#c-loss-time", "#c-step_ms-step", "#c-cpu_s-time", "#c-rss_mb-step"}) {
      INFO(chart);
      CHECK(page.eval("[...document.querySelectorAll('" + std::string(chart) +
                      " polyline[class*=run-]')].map(p => p.points.length).join(',')") == "8,8,8");
    }
    // No run has nodes: no chart of the nodes' figures.
    CHECK(page.eval("document.querySelector('#c-nodes_cpu_s-step') === null") == true);
    CHECK(page.eval("[...document.querySelectorAll('#c-val_bpb-step polyline[class*=run-]')]"
                    ".map(p => p.points.length).join(',')") ==
          fmt_join(std::vector<size_t>(3, val_rows)));
    // Only the settings that differ: lr and spheres (seed, model, steps ... are the same).
    CHECK(page.eval("[...document.querySelectorAll('#differ-table tr[data-key]')].map(r => "
                    "r.dataset.key).join(',')") == "lr,spheres");
    CHECK(page.eval("[...document.querySelectorAll('#differ-table tr[data-key=lr] td.val')]"
                    ".map(e => e.textContent).join(',')") == "0.001,0.001,0.002");
    // A summary row per run; the weights of b (other sphere count) are a's, c's part at step 1.
    CHECK(runs_column(page, "name") == json({"a", "b", "c"}));
    CHECK(runs_column(page, "diff") ==
          json({"(reference)", "identical through step 8", "first difference at step 1"}));
    const json finals = runs_column(page, "final-loss");
    CHECK(finals[0] == finals[1]);
    CHECK(finals[0] != finals[2]);
    // Where each run's step time went: four shares that add up to 1.
    const json split = page.eval(
        "[...document.querySelectorAll('#split-table .split-bar')].map(b => "
        "[...b.querySelectorAll('.seg')].reduce((t, e) => t + +e.dataset.share, 0))");
    REQUIRE(split.size() == 3);
    for (const auto& total : split) CHECK(total.get<double>() == Approx(1).epsilon(1e-4));
    // With three runs no single parting step is marked.
    CHECK(page.eval("document.querySelectorAll('.differ-mark').length") == 0);
  }
  SECTION("two runs that part: the step is marked on every step chart") {
    REQUIRE(run_cli({"report", a, c, "--out", tmp / "two.html"}, 60).code == 0);
    cdp::Page page(browser());
    page.navigate("file://" + tmp / "two.html");
    REQUIRE(page.wait_for("document.body.dataset.ready === '1'", 30));
    no_console_errors(page);
    // One mark per chart against the step (loss, bpb, tokens/s, step time, CPU time, memory).
    CHECK(page.eval("document.querySelectorAll('#charts line.differ-mark').length") == 6);
    CHECK(page.eval("document.querySelector('#c-loss-step .differ-mark-label').textContent") ==
          "weights part: step 1");
    // The mark stands where step 1 is drawn.
    CHECK(page.eval("document.querySelector('#c-loss-step line.differ-mark').getAttribute('x1') "
                    "=== document.querySelector('#c-loss-step polyline.run-0').points[0].x"
                    ".toFixed(1)") == true);
    CHECK(contains(page.eval("document.getElementById('diff-note').textContent").get<std::string>(),
                   "first difference at step 1"));
    REQUIRE(run_cli({"report", a, b, "--out", tmp / "same.html"}, 60).code == 0);
    page.navigate("file://" + tmp / "same.html");
    REQUIRE(page.wait_for("document.body.dataset.ready === '1'", 30));
    CHECK(page.eval("document.querySelectorAll('.differ-mark').length") == 0);
    CHECK(contains(page.eval("document.getElementById('diff-note').textContent").get<std::string>(),
                   "identical through step 8"));
  }
  SECTION("grouped by lr: a band per group, from the smallest to the largest value") {
    REQUIRE(run_cli({"report", a, b, c, "--group-by", "lr", "--out", tmp / "g.html"}, 60).code ==
            0);
    cdp::Page page(browser());
    page.navigate("file://" + tmp / "g.html");
    REQUIRE(page.wait_for("document.body.dataset.ready === '1'", 30));
    no_console_errors(page);
    CHECK(page.eval("document.querySelectorAll('#c-loss-step polygon.band').length") == 2);
    CHECK(page.eval("[...document.querySelectorAll('#groups-legend [data-group]')].map(e => "
                    "e.textContent).join('|')") == "lr = 0.001 (2 runs)|lr = 0.002 (1 runs)");
    CHECK(runs_column(page, "group") == json({"0.001", "0.001", "0.002"}));
    // Tokens/s against the other setting that differs (spheres): a line per group, a point per
    // run (a: 1 sphere, b: 3; c: 1), at the runs' median tokens/s.
    CHECK(page.eval("document.getElementById('by-setting-key').textContent") == "spheres");
    CHECK(page.eval("[...document.querySelectorAll('#c-by-setting polyline')].map(p => "
                    "p.points.length).join(',')") == "2,1");
    const json dd = compare_data(page);
    CHECK(page.eval("document.querySelectorAll('#c-by-setting circle[fill=\"#fff\"]').length") ==
          3);
    CHECK(dd["runs"][0]["tokens_per_s_median"].is_number());
    // a and b are the same bits: their band has no width; c's band is c's loss itself.
    const json d = compare_data(page);
    const json& band0 = d["groups"][0]["bands"]["loss"];
    const json& band1 = d["groups"][1]["bands"]["loss"];
    REQUIRE(band0["x"].size() == 8);
    for (size_t i = 0; i < 8; ++i) {
      CHECK(band0["lo"][i] == band0["hi"][i]);
      CHECK(band0["lo"][i] == d["runs"][0]["series"]["loss"]["y"][i]);
      CHECK(band1["lo"][i] == d["runs"][2]["series"]["loss"]["y"][i]);
    }
  }
}

TEST_CASE("browser: compare page draws the nodes' CPU time and memory of a cluster run",
          "[browser][compare]") {
  TempDir tmp;
  const std::string one = tmp / "one", cluster = tmp / "cluster";
  for (const std::string& dir : {one, cluster}) {
    fs::create_directories(dir);
    synth::Options o;
    o.steps = 40, o.spheres = 13, o.eval_every = 10;
    o.nodes = dir == cluster ? 3 : 0;
    synth::write_run(dir, o);
  }
  const Result rep = run_cli({"report", one, cluster, "--out", tmp / "nodes.html"}, 60);
  INFO(rep.out << rep.err);
  REQUIRE(rep.code == 0);
  cdp::Page page(browser());
  page.navigate("file://" + tmp / "nodes.html");
  REQUIRE(page.wait_for("document.body.dataset.ready === '1' && window.cllmTiming.painted", 30));
  no_console_errors(page);
  // Only the cluster run (run-1) has a line: 40 steps, against the step and training time.
  for (const char* chart : {"#c-nodes_cpu_s-step", "#c-nodes_cpu_s-time", "#c-nodes_rss_mb-step"}) {
    INFO(chart);
    CHECK(page.eval("[...document.querySelectorAll('" + std::string(chart) +
                    " polyline[class*=run-]')].map(p => p.getAttribute('class').split(' ')[1] + "
                    "':' + p.points.length).join(',')") == "run-1:40");
  }
  // The largest of the three nodes (130 MB), and the three nodes' CPU time summed.
  const json d = compare_data(page);
  const json& cpu = d["runs"][1]["series"]["nodes_cpu_s"]["y"];
  const json& root_cpu = d["runs"][1]["series"]["cpu_s"]["y"];
  REQUIRE(cpu.size() == 40);
  CHECK(d["runs"][1]["series"]["nodes_rss_mb"]["y"][0] == 130.0);
  CHECK(std::abs(cpu[5].get<double>() - 3 * root_cpu[5].get<double>()) < 1e-3);
  // The run without nodes has no values there (its chart lines are empty).
  const json& none = d["runs"][0]["series"]["nodes_cpu_s"]["y"];
  CHECK(std::none_of(none.begin(), none.end(), [](const json& v) { return v.is_number(); }));
}

TEST_CASE("browser: compare page of 200 synthetic runs grouped by lr", "[browser][compare]") {
  TempDir tmp;
  const int kRuns = 200, kSteps = 500;
  const double lrs[] = {1e-3, 2e-3, 5e-4, 3e-3};
  Args args = {"report"};
  for (int i = 0; i < kRuns; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "run-%03d", i);
    const std::string dir = tmp / name;
    fs::create_directories(dir);
    synth::Options o;
    o.steps = kSteps, o.spheres = 13, o.seed = uint64_t(i + 1), o.eval_every = 50;
    synth::write_run(dir, o);
    json config = read_json(fs::path(dir) / "config.json");
    config["settings"]["lr"] = lrs[i % 4];
    write_file(fs::path(dir) / "config.json", config.dump(2));
    args.push_back(dir);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const Result rep = run_cli(args + Args{"--group-by", "lr", "--out", tmp / "many.html"}, 300);
  const double report_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(rep.out << rep.err);
  REQUIRE(rep.code == 0);

  cdp::Page page(browser());
  page.navigate("file://" + tmp / "many.html");
  REQUIRE(page.wait_for("document.body.dataset.ready === '1' && window.cllmTiming.painted", 120));
  page.screenshot(out_dir() + "/compare-200.png");
  no_console_errors(page);
  const json timing = page.eval("window.cllmTiming");
  std::cout << "compare page of " << kRuns << " runs x " << kSteps << " steps: cllm report "
            << report_s << " s, " << fs::file_size(tmp / "many.html") / 1024 << " KB, page ready "
            << timing["ready"] << " ms, painted " << timing["painted"] << " ms\n";

  CHECK(page.eval("document.querySelectorAll('#runs-table tr[data-run]').length") == kRuns);
  CHECK(page.eval("document.querySelectorAll('#c-loss-step polyline.s-loss').length") == kRuns);
  CHECK(page.eval("document.querySelectorAll('#c-loss-time polyline.s-loss').length") == kRuns);
  // 500 rows a run, at most 200 points each (about 40,000 per chart).
  const json points = page.eval(
      "[...document.querySelectorAll('#c-loss-step polyline.s-loss')].map(p => p.points.length)");
  for (const auto& p : points) {
    CHECK(p.get<int>() <= 200);
    CHECK(p.get<int>() >= 150);
  }
  CHECK(page.eval("document.querySelectorAll('#c-loss-step polygon.band').length") == 4);
  CHECK(page.eval("document.querySelectorAll('#groups-legend [data-group]').length") == 4);
  // Only lr differs among the recorded settings (the synthetic runs share the rest).
  CHECK(page.eval("[...document.querySelectorAll('#differ-table tr[data-key]')].map(r => "
                  "r.dataset.key).join(',')") == "lr");
  // Each group's band spans exactly its runs' losses: the smallest and largest value over the
  // group's runs within each bucket of 5 steps (100 buckets for 500 steps).
  const json d = compare_data(page);
  REQUIRE(d["groups"].size() == 4);
  for (size_t g = 0; g < 4; ++g) {
    const json& band = d["groups"][g]["bands"]["loss"];
    REQUIRE(band["x"].size() == 100);
    std::vector<double> lo(100, 1e300), hi(100, -1e300);
    for (const auto& r : d["groups"][g]["runs"]) {
      char name[32];
      std::snprintf(name, sizeof name, "run-%03d", r.get<int>());
      for (const auto& row : read_jsonl(fs::path(tmp / name) / "metrics.jsonl")) {
        const size_t b = size_t(row["step"].get<int64_t>() - 1) / 5;
        lo[b] = std::min(lo[b], row["loss"].get<double>());
        hi[b] = std::max(hi[b], row["loss"].get<double>());
      }
    }
    for (size_t b = 0; b < 100; ++b) {
      INFO("group " << g << " bucket " << b);
      CHECK(band["x"][b] == int64_t(5 * b + 5));
      CHECK(band["lo"][b].get<double>() == Approx(lo[b]).epsilon(1e-5));
      CHECK(band["hi"][b].get<double>() == Approx(hi[b]).epsilon(1e-5));
      CHECK(band["lo"][b].get<double>() <= band["mean"][b].get<double>());
      CHECK(band["mean"][b].get<double>() <= band["hi"][b].get<double>());
    }
  }
}

TEST_CASE("browser: cllm serve of a folder of runs shows new runs as they come",
          "[browser][compare]") {
  TempDir tmp;
  const std::string runs = tmp / "runs";
  fs::create_directories(runs);
  const Args common = {"--steps", "6", "--sample-tokens", "0"};
  REQUIRE(run_cli(quick_train(runs + "/a") + common, 120).code == 0);
  REQUIRE(run_cli(quick_train(runs + "/b") + common + Args{"--lr", "0.002"}, 120).code == 0);
  Background bg({"serve", runs, "--port", "0", "--group-by", "lr"});
  const std::string url = served_url(bg, "cllm serve: ");
  INFO(bg.out_so_far() << bg.err_so_far());
  REQUIRE(!url.empty());

  cdp::Page page(browser());
  page.navigate(url);
  REQUIRE(page.wait_for("document.body.dataset.ready === '1'", 60));
  no_console_errors(page);
  CHECK(page.eval("document.querySelectorAll('#runs-table tr[data-run]').length") == 2);
  CHECK(page.eval("document.querySelectorAll('#c-loss-step polygon.band').length") == 2);
  // A third run starts in the folder: the page polls and shows it.
  REQUIRE(run_cli(quick_train(runs + "/c") + common + Args{"--lr", "0.002"}, 120).code == 0);
  CHECK(page.wait_for("document.querySelectorAll('#runs-table tr[data-run]').length === 3", 60));
  CHECK(page.eval("[...document.querySelectorAll('#groups-legend [data-group]')].map(e => "
                  "e.textContent).join('|')") == "lr = 0.001 (1 runs)|lr = 0.002 (2 runs)");
  // c parts from a (the first run) at step 1; the saved report of the page is the compare page.
  CHECK(page.eval("document.querySelector('#runs-table tr[data-run=\"2\"] td.diff').textContent") ==
        "first difference at step 1");
  CHECK(page.eval("fetch('report.html').then(r => r.text()).then(t => "
                  "t.includes('data-mode=\"compare\"') && t.includes('\"runs\":3'))") == true);
  no_console_errors(page);
  bg.signal(SIGINT);
  CHECK(bg.wait(30).code == 0);
}
