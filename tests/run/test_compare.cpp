// Comparing runs without a browser (run/compare): where two runs' fingerprints part, the settings
// that differ, the list of a folder's runs, and the compare page's data (bands, time split).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "run/compare.hpp"
#include "tests/temp_dir.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace cllm::run;

namespace {

using cllm::test::TempDir;

void write(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}

FingerprintRow fp(int64_t step, std::string weights, std::string tensors = "") {
  return {step, std::move(weights), std::move(tensors)};
}

const std::vector<std::string> kNames = {"wte", "wpe", "lnf"};

}  // namespace

TEST_CASE("diff_runs: identical, parting, tensors named, gaps", "[compare]") {
  const std::vector<FingerprintRow> a = {fp(1, "a1", "000000001111111122222222"),
                                         fp(2, "a2", "000000001111111122222222"),
                                         fp(3, "a3", "000000001111111122222222")};
  SECTION("the same rows: identical through the last common step") {
    const RunDiff d = diff_runs(a, {a[0], a[1]}, kNames);
    CHECK(d.identical);
    CHECK(d.compared == 2);
    CHECK(d.through == 2);
    CHECK(d.last_a == 3);
    CHECK(d.last_b == 2);
    CHECK(describe_diff(d, "A", "B") ==
          "identical through step 2 (2 steps compared); A goes on to "
          "step 3\n");
  }
  SECTION("parting at step 3 in the second tensor only") {
    std::vector<FingerprintRow> b = a;
    b[2] = fp(3, "b3", "000000001111111f22222222");
    const RunDiff d = diff_runs(a, b, kNames);
    CHECK(!d.identical);
    CHECK(d.first_differ == 3);
    CHECK(d.through == 2);
    CHECK(d.tensors == std::vector<std::string>{"wpe"});
    const std::string text = describe_diff(d, "A", "B");
    CHECK(text.find("first difference at step 3 (identical through step 2)") == 0);
    CHECK(text.find("tensors that differ (1): wpe") != std::string::npos);
  }
  SECTION("fingerprints only every other step: the parting is located between two") {
    const std::vector<FingerprintRow> b = {fp(1, "a1"), fp(3, "x3")};
    const RunDiff d = diff_runs(a, b, kNames);
    CHECK(d.first_differ == 3);
    CHECK(d.through == 1);
    CHECK(describe_diff(d, "A", "B").find("somewhere in steps 2 to 3") != std::string::npos);
  }
  SECTION("other models: other numbers of tensors") {
    const RunDiff d = diff_runs(a, {fp(1, "z1", "0000000011111111")}, kNames);
    CHECK(d.first_differ == 1);
    CHECK(d.other_models);
    CHECK(d.tensors.empty());
  }
  SECTION("no step in common") {
    const RunDiff d = diff_runs(a, {fp(7, "a1")}, kNames);
    CHECK(d.compared == 0);
    CHECK(!d.identical);
  }
}

TEST_CASE("read_fingerprints: rows with a fingerprint, the last history of a rewritten file",
          "[compare]") {
  TempDir t("cllm-cmp");
  write(t.path / "metrics.jsonl",
        "{\"step\":1,\"loss\":2,\"weights_fp\":\"aa\",\"tensors_fp\":\"01234567\"}\n"
        "{\"step\":2,\"loss\":2}\n"
        "not a row \"weights_fp\"\n"
        "{\"step\":2,\"note\":\"weights_fp\"}\n"
        "{\"step\":3,\"weights_fp\":\"cc\"}\n"
        "{\"step\":2,\"weights_fp\":\"b2\"}\n"  // a resume rewrote history from step 2
        "{\"step\":3,\"weights_fp\":\"c2\"}\n"
        "{\"step\":4,\"weights_fp\":\"d");  // torn
  const auto rows = read_fingerprints(t.path.string());
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].step == 1);
  CHECK(rows[0].tensors == "01234567");
  CHECK(rows[1].weights == "b2");
  CHECK(rows[2].weights == "c2");
  CHECK_THROWS_AS(read_fingerprints((t.path / "missing").string()), RunFolderError);
  fs::create_directories(t.path / "empty");
  CHECK_THROWS_AS(read_fingerprints((t.path / "empty").string()), RunFolderError);
}

TEST_CASE("settings_differences: only what is not the same everywhere", "[compare]") {
  const json a = {{"settings", {{"lr", 0.001}, {"seed", 1}, {"run-dir", "a"}}},
                  {"backend", "actors"},
                  {"spheres", 2}};
  const json b = {{"settings", {{"lr", 0.002}, {"seed", 1}, {"run-dir", "b"}, {"new", true}}},
                  {"backend", "mutex"},
                  {"spheres", 2}};
  const json d = settings_differences({a, b});
  REQUIRE(d.size() == 3);
  CHECK(d[0] == json({{"key", "backend"}, {"values", {"actors", "mutex"}}}));
  CHECK(d[1] == json({{"key", "lr"}, {"values", {0.001, 0.002}}}));
  CHECK(d[2] == json({{"key", "new"}, {"values", {nullptr, true}}}));
  CHECK(settings_differences({a, a}).empty());
}

TEST_CASE("list_runs: status from summary.json, steps from the end of metrics.jsonl", "[compare]") {
  TempDir t("cllm-cmp");
  const fs::path done = t.path / "done", killed = t.path / "killed";
  fs::create_directories(done), fs::create_directories(killed);
  fs::create_directories(t.path / "other");
  const std::string config =
      R"({"settings":{"model":"tiny","tokenizer":""},"run":{"steps":3,"model":{"d_model":64,"layers":2}},"backend":"actors","spheres":2})";
  write(done / "config.json", config);
  write(killed / "config.json", config);
  std::string rows;
  for (int s = 1; s <= 3; ++s) rows += "{\"step\":" + std::to_string(s) + ",\"loss\":1.5}\n";
  write(done / "metrics.jsonl", rows);
  write(done / "summary.json", R"({"steps":3,"final_loss":1.25,"tokens_per_s":1000})");
  write(killed / "metrics.jsonl", rows.substr(0, rows.rfind("{\"step\":3")) + "{\"step\":3,\"lo");
  const json list = list_runs(t.path.string());
  REQUIRE(list.size() == 2);
  const json& a = list[0]["name"] == "done" ? list[0] : list[1];
  const json& b = list[0]["name"] == "done" ? list[1] : list[0];
  CHECK(a["status"] == "finished");
  CHECK(a["steps"] == 3);
  CHECK(a["final_loss"] == 1.25);
  CHECK(a["tokens_per_s"] == 1000);
  CHECK(a["model"] == "tiny (d 64, 2 layers)");
  CHECK(a["tokenizer"] == "byte");
  CHECK(b["status"] == "incomplete");
  CHECK(b["steps"] == 2);  // the torn last row is not counted
  CHECK(b["final_loss"] == 1.5);
  CHECK(list_runs(done.string()).size() == 1);
  CHECK_THROWS_AS(list_runs((t.path / "missing").string()), RunFolderError);
}

TEST_CASE("compare_view: groups, bands over the group's runs, time split", "[compare]") {
  TempDir t("cllm-cmp");
  std::vector<std::string> dirs;
  // Three runs; lr 1 for the first two, 2 for the third; loss = run index + step.
  for (int r = 0; r < 3; ++r) {
    const fs::path d = t.path / ("r" + std::to_string(r));
    fs::create_directories(d);
    write(d / "config.json",
          json({{"settings", {{"lr", r < 2 ? 1 : 2}, {"threads", 2}}}, {"spheres", 2}}).dump());
    std::string rows;
    for (int s = 1; s <= 4; ++s)
      rows += json({{"step", s},
                    {"loss", r + s},
                    {"step_ms", 10.0},
                    {"compute_ms", 12.0},
                    {"fold_ms", 2.0},
                    {"reduce_ms", 1.0},
                    {"spheres_computing", 2}})
                  .dump() +
              "\n";
    write(d / "metrics.jsonl", rows);
    dirs.push_back(d.string());
  }
  CompareOptions o;
  o.group_by = "lr";
  const json v = compare_view(dirs, o);
  REQUIRE(v["groups"].size() == 2);
  CHECK(v["groups"][0]["value"] == "1");
  CHECK(v["groups"][0]["runs"] == json({0, 1}));
  const json& band = v["groups"][0]["bands"]["loss"];
  CHECK(band["x"] == json({1, 2, 3, 4}));
  CHECK(band["lo"] == json({1, 2, 3, 4}));
  CHECK(band["hi"] == json({2, 3, 4, 5}));
  CHECK(band["mean"] == json({1.5, 2.5, 3.5, 4.5}));
  CHECK(v["runs"][2]["group"] == 1);
  CHECK(v["differ"] == json::parse(R"([{"key":"lr","values":[1,1,2]}])"));
  // 2 spheres x 10 ms = 20 ms a step: compute 12, fold 2, reduce 1, wait 5.
  const json& split = v["runs"][0]["time_split"];
  CHECK(split["compute"].get<double>() == Approx(0.6));
  CHECK(split["fold"].get<double>() == Approx(0.1));
  CHECK(split["reduce"].get<double>() == Approx(0.05));
  CHECK(split["wait"].get<double>() == Approx(0.25));
  // Training time: the steps' times summed.
  CHECK(v["runs"][0]["series"]["loss"]["t"] == json({0.01, 0.02, 0.03, 0.04}));
  o.group_by = "nope";
  CHECK_THROWS_AS(compare_view(dirs, o), RunFolderError);
}
