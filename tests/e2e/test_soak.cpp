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

namespace {

// "resuming from PATH (step N)" in a resumed run's output: N, or -1.
int64_t resumed_step(const std::string& text) {
  static const std::regex re(R"(resuming from \S+ \(step ([0-9]+)\))");
  std::smatch m;
  return std::regex_search(text, m, re) ? std::stoll(m[1].str()) : -1;
}

// Restarts recorded in the metrics rows of steps (from, to].
int64_t restarts_in(const std::vector<json>& rows, int64_t from, int64_t to) {
  int64_t n = 0;
  for (const auto& r : rows) {
    const int64_t step = r.at("step").get<int64_t>();
    if (step > from && step <= to && r.contains("faults"))
      n += r["faults"].at("restarts").get<int64_t>();
  }
  return n;
}

}  // namespace

// The size the fault tolerance is for: the GPT-2 body (d 768, 12 layers, 12 heads, context 1024,
// 86 M parameters) with the byte vocabulary, which needs no tokenizer file (`--model gpt2` would
// need GPT-2's, and its 50304-row LM head changes nothing about the faults). 2 spheres of
// micro-batch 1: one 1024-token shard each; the whole test took 5 minutes on a shared 2-core VM.
// The faulty run has chaos crashes and is killed twice with SIGKILL, each time resumed; it must end
// with the clean run's weights, bit for bit.
TEST_CASE(
    "soak: GPT-2 body on 2 spheres with chaos and two SIGKILLs + --resume ends as a clean run",
    "[e2e][soak]") {
  TempDir tmp;
  constexpr int64_t kSteps = 10;
  const Args base = Args{"train", "--corpus", corpus_file(), "--progress", "plain"} +
                    Args{"--d-model", "768", "--layers", "12", "--heads", "12"} +
                    Args{"--context", "1024", "--spheres", "2", "--threads", "2"} +
                    Args{"--batch", "2", "--micro-batch", "1", "--steps", std::to_string(kSteps)} +
                    Args{"--checkpoint-every", "3", "--eval-every", "0", "--eval-windows", "1"} +
                    Args{"--sample-tokens", "0"};
  // Chaos seed 29 draws crashes in steps 1 (sphere 1), 6 (sphere 1) and 8 (sphere 0): one in
  // the steps each of the three lives of the faulty run keeps (1-3, 4-6, 7-10). Checked below.
  const Args chaos = Args{"--chaos", "0.1", "--chaos-seed", "29"} +
                     Args{"--max-restarts", "100", "--root-max-restarts", "100"};
  const std::string clean_dir = tmp / "clean", dir = tmp / "faulty";
  const fs::path ckdir = fs::path(dir) / "checkpoints";

  const Result clean = run_cli(base + Args{"--run-dir", clean_dir}, 1200);
  INFO("clean stderr: " << clean.err);
  REQUIRE(clean.code == 0);
  REQUIRE(printed_hash(clean).size() == 64);

  // Kill k: once `rows` steps are in metrics.jsonl and the checkpoint of step `ckpt` exists, so
  // that the steps after that checkpoint are lost and must be computed again.
  struct Kill {
    size_t rows;
    int64_t ckpt;
  };
  const Kill kills[] = {{4, 3}, {8, 6}};
  std::vector<int64_t> resumed_at;  // the step each resumed life started from
  std::string err_of_lives;
  for (size_t k = 0; k < 2; ++k) {
    const Args args = base + Args{"--run-dir", dir} + chaos + (k > 0 ? Args{"--resume"} : Args{});
    Background bg(args);
    const bool ready = bg.wait_until(
        [&] {
          const auto present = checkpoint_files(ckdir);
          return count_newlines(fs::path(dir) / "metrics.jsonl") >= kills[k].rows &&
                 std::find(present.begin(), present.end(), ckpt_name(kills[k].ckpt)) !=
                     present.end();
        },
        1200);
    bg.signal(SIGKILL);
    const Result killed = bg.wait(120);
    const size_t rows_at_kill = count_newlines(fs::path(dir) / "metrics.jsonl");
    const auto present = checkpoint_files(ckdir);
    INFO("kill " << k + 1 << ": stdout: " << killed.out << "\nstderr: " << killed.err);
    REQUIRE(ready);
    // It was killed mid-run: by the signal, before the last step and the last checkpoint.
    CHECK(killed.code == 128 + SIGKILL);
    CHECK(rows_at_kill < size_t(kSteps));
    REQUIRE(!present.empty());
    CHECK(present.back() < ckpt_name(kSteps));
    if (k > 0) resumed_at.push_back(resumed_step(killed.out + killed.err));
    err_of_lives += killed.err;
  }
  const Result last = run_cli(base + Args{"--run-dir", dir} + chaos + Args{"--resume"}, 1200);
  INFO("last life: stdout: " << last.out << "\nstderr: " << last.err);
  REQUIRE(last.code == 0);
  resumed_at.push_back(resumed_step(last.out + last.err));
  err_of_lives += last.err;

  // The two kills were at different points, and each lost work past its checkpoint.
  REQUIRE(resumed_at.size() == 2);
  CHECK(resumed_at[0] == 3);
  CHECK(resumed_at[1] == 6);

  CHECK(printed_hash(last) == printed_hash(clean));
  CHECK(read_json(fs::path(dir) / "summary.json").at("weights_sha256") == printed_hash(clean));
  const auto rows = read_jsonl(fs::path(dir) / "metrics.jsonl");
  const auto clean_rows = read_jsonl(fs::path(clean_dir) / "metrics.jsonl");
  REQUIRE(rows.size() == size_t(kSteps));
  REQUIRE(clean_rows.size() == size_t(kSteps));
  for (size_t i = 0; i < rows.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(rows[i].at("loss") == clean_rows[i].at("loss"));
    CHECK(rows[i].at("grad_norm") == clean_rows[i].at("grad_norm"));
  }
  // Chaos struck in each life, in the steps that life kept; the clean run had no fault.
  INFO("stderr of the lives: " << err_of_lives);
  CHECK(contains(err_of_lives, "crashed"));
  CHECK(restarts_in(rows, 0, resumed_at[0]) >= 1);
  CHECK(restarts_in(rows, resumed_at[0], resumed_at[1]) >= 1);
  CHECK(restarts_in(rows, resumed_at[1], kSteps) >= 1);
  CHECK(restarts_in(clean_rows, 0, kSteps) == 0);
}
