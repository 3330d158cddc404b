// The run-folder reader behind `cllm report` and `cllm serve`: incremental reading, torn and
// bad lines, a rewritten (resumed) metrics file, downsampling that keeps the exact figures,
// fault events, a folder that disappears; and the page it renders.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "run/report.hpp"
#include "run/run_data.hpp"
#include "tests/temp_dir.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace cllm::run;

namespace {

using cllm::test::TempDir;

// A row as the session writes it, with extra keys merged in.
std::string line(int64_t step, double loss, json extra = json::object()) {
  json j = {{"step", step},           {"loss", loss},       {"lr", 1e-3},     {"tokens_per_s", 1e3},
            {"step_ms", 10.0},        {"compute_ms", 15.0}, {"fold_ms", 1.0}, {"reduce_ms", 2.0},
            {"spheres_computing", 2}, {"grad_norm", 0.5}};
  j.update(extra);
  return j.dump() + "\n";
}

void append(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::app | std::ios::binary) << text;
}

bool has_notice(const json& view, const std::string& needle) {
  for (const auto& n : view["notices"])
    if (n["text"].get<std::string>().find(needle) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("run view: rows are read incrementally; a torn last line waits", "[run]") {
  TempDir t("cllm-run");
  const fs::path m = t.path / "metrics.jsonl";
  append(m, line(1, 5.0) + line(2, 4.0));
  RunReader r(t.path.string());
  r.refresh();
  REQUIRE(r.rows().size() == 2);
  const uint64_t v1 = r.version();
  r.refresh();
  CHECK(r.version() == v1);  // nothing changed

  // Half a row: left out, with a notice; completed later, it is read.
  const std::string third = line(3, 3.0);
  append(m, third.substr(0, 20));
  r.refresh();
  CHECK(r.rows().size() == 2);
  CHECK(r.version() != v1);
  CHECK(has_notice(r.view(), "incomplete line"));
  append(m, third.substr(20));
  r.refresh();
  REQUIRE(r.rows().size() == 3);
  CHECK(r.rows().back().loss == 3.0);
  CHECK_FALSE(has_notice(r.view(), "incomplete line"));

  // A line that is not a row is counted and skipped.
  append(m, "not json\n" + line(4, 2.0));
  r.refresh();
  CHECK(r.rows().size() == 4);
  CHECK(has_notice(r.view(), "1 line of metrics.jsonl is not"));
}

TEST_CASE("run view: a rewritten metrics file (a resume) is read again from the start", "[run]") {
  TempDir t("cllm-run");
  const fs::path m = t.path / "metrics.jsonl";
  append(m, line(1, 5.0) + line(2, 4.0) + line(3, 3.5) + line(4, 3.0));
  RunReader r(t.path.string());
  r.refresh();
  REQUIRE(r.rows().size() == 4);
  // As the session does on --resume: keep rows up to the checkpoint (step 2), replace the file
  // through a rename, then continue.
  {
    const fs::path tmp = t.path / "metrics.jsonl.tmp";
    std::ofstream(tmp) << line(1, 5.0) << line(2, 4.0);
    fs::rename(tmp, m);
  }
  append(m, line(3, 3.4, {{"resumed_from", 2}}));
  r.refresh();
  REQUIRE(r.rows().size() == 3);
  CHECK(r.rows().back().loss == 3.4);
  const json v = r.view();
  bool resume = false;
  for (const auto& e : v["events"]) resume |= e["kind"] == "resume" && e["step"] == 3;
  CHECK(resume);
}

TEST_CASE("run view: long runs are downsampled, exact figures kept", "[run]") {
  TempDir t("cllm-run");
  const fs::path m = t.path / "metrics.jsonl";
  const int64_t n = 100000;
  double min_loss = 1e9, last = 0;
  int64_t min_step = 0;
  {
    std::ofstream f(m);
    for (int64_t s = 1; s <= n; ++s) {
      // Distinct values with one deep dip that decimation must not lose.
      const double loss =
          s == 73421 ? 0.5 : 2.0 + 3.0 / std::sqrt(double(s)) + 1e-7 * double(s % 97);
      if (loss < min_loss) min_loss = loss, min_step = s;
      last = loss;
      json extra = json::object();
      if (s % 200 == 0) extra = {{"val_loss", loss + 0.1}, {"val_bpb", 1.5}};
      if (s % 1000 == 7) extra["faults"] = {{"restarts", 2}};
      f << line(s, loss, extra);
    }
  }
  std::ofstream(t.path / "config.json") << json({{"run", {{"steps", n}}}}).dump();
  RunReader r(t.path.string());
  r.refresh();
  ViewOptions o;
  o.max_points = 2000;
  const json v = r.view(o);
  const json& loss = v["series"]["loss"];
  CHECK(loss["n"] == n);
  CHECK(loss["x"].size() <= 2000);
  CHECK(loss["x"].size() >= 1000);
  // The dip is drawn, and the figures are exact.
  bool dip = false;
  for (size_t i = 0; i < loss["x"].size(); ++i) dip |= loss["x"][i] == 73421;
  CHECK(dip);
  CHECK(v["stats"]["loss"]["min"]["value"].get<double>() == min_loss);
  CHECK(v["stats"]["loss"]["min"]["step"] == min_step);
  CHECK(v["stats"]["loss"]["last"]["value"].get<double>() == last);
  CHECK(v["stats"]["loss"]["last"]["step"] == n);
  CHECK(v["series"]["val_loss"]["n"] == n / 200);
  CHECK(v["stats"]["restarts"] == 2 * (n / 1000));
  CHECK(v["series"]["share"]["x"].size() == 1000);
  // Every step's shares add up to one.
  const json& sh = v["series"]["share"];
  for (size_t i = 0; i < sh["x"].size(); i += 97)
    CHECK(sh["compute"][i].get<double>() + sh["fold"][i].get<double>() +
              sh["reduce"][i].get<double>() + sh["wait"][i].get<double>() ==
          Approx(1.0).margin(1e-4));
  // The page's data stays small.
  CHECK(dump_for_page(v).size() < 1000000);
}

TEST_CASE("run view: many fault events are merged per step bucket, counts kept", "[run]") {
  TempDir t("cllm-run");
  std::string text;
  for (int64_t s = 1; s <= 5000; ++s) text += line(s, 3.0, {{"faults", {{"restarts", 1}}}});
  append(t.path / "metrics.jsonl", text);
  RunReader r(t.path.string());
  r.refresh();
  ViewOptions o;
  o.max_events = 100;
  const json v = r.view(o);
  CHECK(v["events"].size() <= 100);
  CHECK(v["events_bucket"].get<int64_t>() > 1);
  int64_t total = 0;
  for (const auto& e : v["events"]) total += e["count"].get<int64_t>();
  CHECK(total == 5000);
}

TEST_CASE("run view: a folder that disappears keeps its data and says so", "[run]") {
  TempDir t("cllm-run");
  const fs::path dir = t.path / "run";
  fs::create_directories(dir);
  append(dir / "metrics.jsonl", line(1, 5.0) + line(2, 4.0));
  std::ofstream(dir / "config.json") << R"({"run": {"steps": 10, "lr": 0.001}})";
  RunReader r(dir.string());
  r.refresh();
  CHECK(r.view()["status"]["state"] == "running");
  fs::remove_all(dir);
  r.refresh();
  const json v = r.view();
  CHECK(v["status"]["state"] == "gone");
  CHECK(has_notice(v, "is gone"));
  CHECK(v["stats"]["rows"] == 2);
  CHECK(v["config"]["run"]["steps"] == 10);
}

TEST_CASE("run view: finished and stopped runs; unreadable files", "[run]") {
  TempDir t("cllm-run");
  append(t.path / "metrics.jsonl",
         line(1, 5.0) + line(2, 4.0, {{"checkpoint", "ckpt-00000002.safetensors"}}));
  std::ofstream(t.path / "summary.json")
      << R"({"steps": 2, "stop_reason": "", "checkpoint": "x/ckpt-00000002.safetensors"})";
  std::ofstream(t.path / "spheres.json") << "[{\"id\": 0, \"level\": 0, \"parent\": -1";  // torn
  RunReader r(t.path.string());
  r.refresh();
  json v = r.view();
  CHECK(v["status"]["state"] == "finished");
  CHECK(has_notice(v, "spheres.json is not valid JSON"));
  int checkpoints = 0;
  for (const auto& e : v["events"]) checkpoints += e["kind"] == "checkpoint";
  CHECK(checkpoints == 1);  // the final one is the step-2 one, listed once
  std::ofstream(t.path / "summary.json")
      << R"({"steps": 2, "stop_reason": "interrupted after step 2"})";
  r.refresh();
  v = r.view();
  CHECK(v["status"]["state"] == "stopped");
}

TEST_CASE("report page: self-contained, data embedded safely", "[run]") {
  TempDir t("cllm-run");
  append(t.path / "metrics.jsonl", line(1, 5.0));
  // Text that must not end the script element, and bytes that are not UTF-8.
  std::ofstream(t.path / "sample.txt") << "</script><script>alert(1)</script> \xff\xfe end";
  std::ofstream(t.path / "config.json")
      << R"({"run": {"steps": 1}, "settings": {"corpus": "a</script>b"}})";
  const std::string out = (t.path / "r.html").string();
  const ReportResult res = write_report(t.path.string(), out);
  CHECK(res.rows == 1);
  std::ifstream f(out);
  const std::string html((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(html.size() == res.bytes);
  // Exactly the page's own two script elements; nothing loaded from elsewhere.
  size_t scripts = 0;
  for (size_t p = 0; (p = html.find("</script>", p)) != std::string::npos; ++p) ++scripts;
  CHECK(scripts == 2);
  CHECK(html.find("src=\"http") == std::string::npos);
  CHECK(html.find("href=\"http") == std::string::npos);
  CHECK(html.find("default-src 'none'") != std::string::npos);
  CHECK(html.find("@@") == std::string::npos);  // every placeholder filled

  CHECK_THROWS_AS(write_report((t.path / "nothing-here").string(), out), RunFolderError);
  fs::create_directories(t.path / "empty");
  CHECK_THROWS_AS(write_report((t.path / "empty").string(), out), RunFolderError);
}
