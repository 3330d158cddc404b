// Long runs for the `soak` ctest label (not part of CI): many faults over many steps, and the
// result must still be the fault-free one, bit for bit.
#include <catch2/catch.hpp>

#include "cli_util.hpp"

using namespace e2e;

TEST_CASE("soak: 300 chaotic steps with hangs on a 157-sphere tree", "[e2e][soak]") {
  TempDir tmp;
  const Args base = Args{"--steps",      "300", "--batch",         "32", "--micro-batch", "1",
                         "--eval-every", "100", "--sample-tokens", "0",  "--threads",     "2"};
  const Result clean = run_cli(quick_train(tmp / "clean") + base + Args{"--spheres", "1"}, 900);
  REQUIRE(clean.code == 0);
  const Result chaos = run_cli(quick_train(tmp / "chaos") + base +
                                   Args{"--spheres",
                                        "157",
                                        "--fanout",
                                        "12",
                                        "--chaos",
                                        "0.01",
                                        "--chaos-seed",
                                        "11",
                                        "--inject",
                                        "hang:sphere=3,step=50",
                                        "--inject",
                                        "hang:sphere=14,step=150",
                                        "--inject",
                                        "crash:sphere=0,step=200",
                                        "--max-restarts",
                                        "1000",
                                        "--root-max-restarts",
                                        "1000",
                                        "--deadline-floor",
                                        "0.5"},
                               1800);
  INFO("stderr: " << chaos.err);
  REQUIRE(chaos.code == 0);
  REQUIRE(printed_hash(chaos) == printed_hash(clean));
  const json s = read_json(fs::path(tmp / "chaos") / "summary.json");
  CHECK(s["restarts"].get<int64_t>() >= 50);
  CHECK(s["deadline_kills"].get<int64_t>() >= 2);
}

TEST_CASE("soak: ten SIGKILLs and resumes over one run", "[e2e][soak]") {
  TempDir tmp;
  const Args base = Args{"--steps",
                         "120",
                         "--batch",
                         "16",
                         "--eval-every",
                         "40",
                         "--sample-tokens",
                         "0",
                         "--checkpoint-every",
                         "4",
                         "--spheres",
                         "2"};
  const Result ref = run_cli(quick_train(tmp / "ref") + base, 900);
  REQUIRE(ref.code == 0);
  const std::string dir = tmp / "killed";
  for (int k = 0; k < 10; ++k) {
    const Args args = quick_train(dir) + base + (k > 0 ? Args{"--resume"} : Args{});
    Background bg(args);
    const size_t target = size_t(8 + 11 * k);
    bg.wait_until([&] { return count_newlines(fs::path(dir) / "metrics.jsonl") >= target; }, 300);
    bg.signal(SIGKILL);
    bg.wait(60);
  }
  const Result last = run_cli(quick_train(dir) + base + Args{"--resume"}, 900);
  INFO("stderr: " << last.err);
  REQUIRE(last.code == 0);
  REQUIRE(printed_hash(last) == printed_hash(ref));
}
