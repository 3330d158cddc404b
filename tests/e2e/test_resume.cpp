// End-to-end tests of checkpoints and --resume: a run killed (SIGKILL), interrupted (SIGINT,
// SIGTERM), with corrupt checkpoints or changed settings, or stopped by the supervision tree, ends
// with the same weights as the uninterrupted run, and nothing is lost.
#include <catch2/catch.hpp>

#include "cli_util.hpp"

using namespace e2e;

namespace {

// 40 steps of the tiny model with 16 shards a step (a few ms a step), a checkpoint every 3 steps:
// long enough for signals to land at varied points, short enough to run many times.
Args long_train(const std::string& run_dir) {
  return quick_train(run_dir) + Args{"--batch", "32", "--steps", "40", "--eval-every", "10"} +
         Args{"--sample-tokens", "0", "--checkpoint-every", "3"} +
         Args{"--spheres", "2", "--threads", "2"};
}

struct Reference {
  std::string hash;
  std::vector<json> rows;
  json summary;
};

// The uninterrupted run of long_train (once per test process).
const Reference& reference() {
  static TempDir tmp;
  static const Reference ref = [] {
    const std::string dir = tmp / "ref";
    const Result r = run_cli(long_train(dir));
    if (r.code != 0) throw std::runtime_error("the reference run failed: " + r.err);
    Reference x;
    x.hash = printed_hash(r);
    x.rows = read_jsonl(fs::path(dir) / "metrics.jsonl");
    x.summary = read_json(fs::path(dir) / "summary.json");
    return x;
  }();
  return ref;
}

size_t metric_rows(const std::string& dir) {
  return count_newlines(fs::path(dir) / "metrics.jsonl");
}

// "resuming from PATH (step N)" in the output: PATH and N, or {"", -1}.
std::pair<std::string, int64_t> resumed_from(const Result& r) {
  static const std::regex re(R"(resuming from (\S+) \(step ([0-9]+)\))");
  std::smatch m;
  const std::string all = r.out + r.err;
  if (std::regex_search(all, m, re)) return {m[1].str(), std::stoll(m[2].str())};
  return {"", -1};
}

// A resumed (or any) run in `dir` finished exactly like the reference: hash, every metrics row's
// training values, summary.
// summary_losses: also compare final_loss and val_loss of summary.json (see the  test
// of a finished run's resume for why that is optional).
void check_same_as_reference(const Result& r, const std::string& dir, bool summary_losses = true) {
  const Reference& ref = reference();
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.code == 0);
  CHECK(printed_hash(r) == ref.hash);
  const auto rows = read_jsonl(fs::path(dir) / "metrics.jsonl");
  REQUIRE(rows.size() == ref.rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    INFO("metrics row " << i << ": " << rows[i].dump() << " vs " << ref.rows[i].dump());
    CHECK(rows[i].at("step") == ref.rows[i].at("step"));
    for (const char* k : {"loss", "lr", "grad_norm"}) CHECK(rows[i].at(k) == ref.rows[i].at(k));
    CHECK(rows[i].contains("val_loss") == ref.rows[i].contains("val_loss"));
    if (ref.rows[i].contains("val_loss"))
      CHECK(rows[i].value("val_loss", -1.0) == ref.rows[i]["val_loss"]);
  }
  const json s = read_json(fs::path(dir) / "summary.json");
  CHECK(s.at("weights_sha256") == ref.hash);
  CHECK(s.at("steps") == 40);
  if (summary_losses) {
    CHECK(s.at("final_loss") == ref.summary.at("final_loss"));
    CHECK(s.at("val_loss") == ref.summary.at("val_loss"));
  }
}

void flip_byte(const fs::path& p, size_t at) {
  std::string bytes = read_file(p);
  REQUIRE(at < bytes.size());
  bytes[at] = char(bytes[at] ^ 0xFF);
  write_file(p, bytes);
}

}  // namespace

TEST_CASE("resume (a): the uninterrupted run, with and without checkpoints", "[e2e][resume]") {
  TempDir tmp;
  const Reference& ref = reference();
  REQUIRE(ref.hash.size() == 64);
  REQUIRE(ref.rows.size() == 40);

  SECTION("40 steps: checkpoints change nothing; the last 3 are kept") {
    const std::string dir = tmp / "nock";
    const Result r = run_cli(long_train(dir) + Args{"--checkpoint-every", "0"});
    check_same_as_reference(r, dir);
    CHECK(checkpoint_files(fs::path(dir) / "checkpoints") ==
          std::vector<std::string>{ckpt_name(40)});

    const std::string dir2 = tmp / "ck";
    const Result r2 = run_cli(long_train(dir2));
    check_same_as_reference(r2, dir2);
    CHECK(checkpoint_files(fs::path(dir2) / "checkpoints") ==
          std::vector<std::string>{ckpt_name(36), ckpt_name(39), ckpt_name(40)});
  }
  SECTION("12 steps, --checkpoint-every 3") {
    const Result a = run_cli(long_train(tmp / "a12") + Args{"--steps", "12"});
    const Result b =
        run_cli(long_train(tmp / "b12") + Args{"--steps", "12", "--checkpoint-every", "0"});
    INFO("stderr: " << a.err << b.err);
    CHECK(a.code == 0);
    CHECK(b.code == 0);
    CHECK(printed_hash(a).size() == 64);
    CHECK(printed_hash(a) == printed_hash(b));
  }
  SECTION("--resume of a finished run changes nothing") {
    const std::string dir = tmp / "done";
    REQUIRE(run_cli(long_train(dir)).code == 0);
    const Result r = run_cli(long_train(dir) + Args{"--resume"});
    check_same_as_reference(r, dir, false);
    CHECK(resumed_from(r).second == 40);
  }
}

TEST_CASE("resume (b): killed with SIGKILL at several points, --resume ends the same",
          "[e2e][resume][kill]") {
  const Reference& ref = reference();
  REQUIRE(ref.hash.size() == 64);
  struct Kill {
    size_t k;           // kill once metrics.jsonl has k rows (and a checkpoint exists)
    Args resume;        // extra options of the resumed run: another tree or backend changes nothing
    bool bare = false;  // resume with only --run-dir and --resume: the run's settings are used
  };
  const std::vector<Kill> kills = {{3, {}},
                                   {5, {}},
                                   {8, {}},
                                   {13, {"--spheres", "5", "--threads", "1"}},
                                   {22, {"--backend", "mutex"}},
                                   {31, {"--spheres", "13", "--fanout", "3"}},
                                   {17, {}, true}};
  for (const Kill& kill : kills) {
    const size_t k = kill.k;
    DYNAMIC_SECTION("kill -9 after " << k << " steps, resume" << describe(kill.resume).substr(4)
                                     << (kill.bare ? " with no settings" : "")) {
      TempDir tmp;
      const std::string dir = tmp / "run";
      const fs::path ckdir = fs::path(dir) / "checkpoints";
      size_t rows_at_kill = 0;
      {
        Background bg(long_train(dir));
        const bool ready = bg.wait_until(
            [&] { return metric_rows(dir) >= k && !checkpoint_files(ckdir).empty(); });
        bg.signal(SIGKILL);
        const Result killed = bg.wait();
        rows_at_kill = metric_rows(dir);  // complete rows when it died
        INFO("stdout: " << killed.out << "\nstderr: " << killed.err);
        REQUIRE(ready);
        // 137 normally; 0 only if the run ended before the signal landed (then resume is a no-op).
        CHECK((killed.code == 128 + SIGKILL || killed.code == 0));
      }
      // Temporaries as a writer killed mid-write leaves them: never taken for checkpoints.
      write_file(ckdir / (ckpt_name(39) + ".tmp.999999"), "not a checkpoint");
      const auto present = checkpoint_files(ckdir);
      REQUIRE(!present.empty());
      const std::string newest = read_file(ckdir / present.back());
      write_file(ckdir / (ckpt_name(38) + ".tmp"), newest.substr(0, newest.size() / 2));

      const Result r = kill.bare ? run_cli(Args{"train", "--run-dir", dir, "--resume", "--progress",
                                                "plain", "--sample-tokens", "0"})
                                 : run_cli(long_train(dir) + Args{"--resume"} + kill.resume);
      INFO("rows at kill: " << rows_at_kill);
      check_same_as_reference(r, dir);
      const auto [path, step] = resumed_from(r);
      CHECK(!contains(path, ".tmp"));
      CHECK(step >= 3);
      CHECK(step <= int64_t(rows_at_kill));
      CHECK(fs::path(path).filename().string() == ckpt_name(step));
    }
  }
}

TEST_CASE("resume (c): SIGINT or SIGTERM stops with 130 and a checkpoint, --resume ends the same",
          "[e2e][resume][signal]") {
  const Reference& ref = reference();
  REQUIRE(ref.hash.size() == 64);
  for (int sig : {SIGINT, SIGTERM}) {
    DYNAMIC_SECTION((sig == SIGINT ? "SIGINT" : "SIGTERM")) {
      TempDir tmp;
      const std::string dir = tmp / "run";
      const fs::path ckdir = fs::path(dir) / "checkpoints";
      Result stopped;
      {
        Background bg(long_train(dir));
        REQUIRE(bg.wait_until([&] { return metric_rows(dir) >= 7; }));
        bg.signal(sig);
        stopped = bg.wait();
      }
      INFO("stdout: " << stopped.out << "\nstderr: " << stopped.err);
      const auto rows = read_jsonl(fs::path(dir) / "metrics.jsonl");
      const int64_t done = int64_t(rows.size());
      CHECK(done >= 7);
      // 130 normally; 0 only if the run ended before the signal landed (the race (b) accepts):
      // then every step is done and the resume below has nothing left to do.
      if (stopped.code == 0) {
        CHECK(done == 40);
      } else {
        CHECK(stopped.code == 130);
        CHECK(contains(stopped.err, "interrupted"));
        CHECK(contains(stopped.err, "--resume"));
        CHECK(done < 40);
      }
      CHECK(rows.back().at("step") == done);
      // The checkpoint of the last completed step.
      const auto present = checkpoint_files(ckdir);
      REQUIRE(!present.empty());
      CHECK(present.back() == ckpt_name(done));
      CHECK(read_json(fs::path(dir) / "summary.json").at("steps") == done);
      CHECK(printed_hash(stopped).size() == 64);

      const Result r = run_cli(long_train(dir) + Args{"--resume"});
      check_same_as_reference(r, dir);
      CHECK(resumed_from(r).second == done);
    }
  }
}

TEST_CASE("resume (d): a corrupt newest checkpoint is reported and the previous one used",
          "[e2e][resume][corrupt]") {
  const Reference& ref = reference();
  REQUIRE(ref.hash.size() == 64);
  TempDir tmp;
  const std::string dir = tmp / "run";
  const fs::path ckdir = fs::path(dir) / "checkpoints";
  REQUIRE(run_cli(long_train(dir)).code == 0);
  REQUIRE(checkpoint_files(ckdir) ==
          std::vector<std::string>{ckpt_name(36), ckpt_name(39), ckpt_name(40)});
  const fs::path newest = ckdir / ckpt_name(40);
  const auto size = fs::file_size(newest);

  auto resume_uses_39 = [&] {
    const Result r = run_cli(long_train(dir) + Args{"--resume"});
    check_same_as_reference(r, dir);
    CHECK(contains(r.out + r.err, ckpt_name(40)));  // the corrupt file is named
    CHECK(resumed_from(r).second == 39);
    // The new final checkpoint is a good one.
    const Result s = run_cli({"sample", "--checkpoint", newest.string(), "--tokens", "5"}, 30);
    INFO("sample stderr: " << s.err);
    CHECK(s.code == 0);
  };
  SECTION("a byte flipped in the middle") {
    flip_byte(newest, size_t(size / 2));
    resume_uses_39();
  }
  SECTION("a byte flipped in the header") {
    flip_byte(newest, 20);
    resume_uses_39();
  }
  SECTION("truncated") {
    fs::resize_file(newest, size / 2);
    resume_uses_39();
  }
  SECTION("all corrupt: exit 2") {
    for (const auto& name : checkpoint_files(ckdir)) flip_byte(ckdir / name, size_t(size / 2));
    const Result r = run_cli(long_train(dir) + Args{"--resume"});
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.code == 2);
    // One line: the newest one's reason and how many older ones failed too (was one line per
    // corrupt file, then the error).
    const auto lines = r.err_lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].rfind("cllm: error: ", 0) == 0);
    CHECK(contains(lines[0], "no usable checkpoint"));
    CHECK(contains(lines[0], ckpt_name(40)));
    CHECK(contains(lines[0], "the 2 older ones are unusable too"));
    CHECK(!contains(r.out, "weights sha256"));
  }
}

TEST_CASE("resume (e): other settings are refused and the run folder is untouched",
          "[e2e][resume][settings]") {
  TempDir tmp;
  const std::string dir = tmp / "run";
  REQUIRE(run_cli(long_train(dir) + Args{"--steps", "12"}).code == 0);
  // Leave a run that stopped half-way: its checkpoints are what --resume would continue from.
  const auto before = snapshot(dir);
  REQUIRE(before.count("checkpoints/" + ckpt_name(12)) == 1);

  struct Change {
    std::string name;
    Args args;
    std::string needle;
  };
  for (const Change& c : std::vector<Change>{{"--batch 16", {"--batch", "16"}, "batch"},
                                             {"--seed 7", {"--seed", "7"}, "seed"},
                                             {"--model small", {"--model", "small"}, "model"}}) {
    DYNAMIC_SECTION(c.name) {
      const Result r = run_cli(long_train(dir) + Args{"--steps", "12", "--resume"} + c.args);
      INFO("stdout: " << r.out << "\nstderr: " << r.err);
      CHECK(r.code == 2);
      const auto lines = r.err_lines();
      REQUIRE(lines.size() == 1);
      CHECK(lines[0].rfind("cllm: error: ", 0) == 0);
      CHECK(contains(lines[0], c.needle));
      CHECK(!contains(r.out, "weights sha256"));
      const auto after = snapshot(dir);
      CHECK(after.size() == before.size());
      for (const auto& [name, bytes] : before) {
        INFO(name);
        CHECK(after.count(name) == 1);
        CHECK((after.count(name) && after.at(name) == bytes));
      }
    }
  }
}

TEST_CASE("resume (f): --resume with no checkpoint is bad input", "[e2e][resume]") {
  TempDir tmp;
  SECTION("an empty run folder") {
    const std::string dir = tmp / "empty";
    fs::create_directories(dir);
    const Result r = run_cli(quick_train(dir) + Args{"--resume"});
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.code == 2);
    const auto lines = r.err_lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].rfind("cllm: error: ", 0) == 0);
    CHECK(contains(lines[0], "checkpoint"));
  }
  SECTION("a run folder that does not exist") {
    const std::string dir = tmp / "missing";
    const Result r = run_cli(quick_train(dir) + Args{"--resume"});
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.code == 2);
    CHECK(r.err_lines().size() == 1);
  }
}

TEST_CASE(
    "resume (g): past the root's restart limit the run stops with exit 4 and a usable "
    "checkpoint",
    "[e2e][resume][faults]") {
  TempDir tmp;
  const std::string dir = tmp / "run";
  const Result r = run_cli(quick_train(dir) + Args{"--chaos", "0.9", "--root-max-restarts", "1",
                                                   "--max-restarts", "1", "--spheres", "3"});
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.code == 4);
  const auto lines = r.err_lines();
  REQUIRE(!lines.empty());
  CHECK(lines[0].rfind("cllm: ", 0) == 0);
  CHECK(contains(r.err, "gave up"));
  CHECK(contains(r.err, "restart"));
  CHECK(!contains(r.err, "dumped core"));

  const auto present = checkpoint_files(fs::path(dir) / "checkpoints");
  REQUIRE(!present.empty());
  const json s = read_json(fs::path(dir) / "summary.json");
  const int64_t done = s.at("steps").get<int64_t>();
  CHECK(present.back() == ckpt_name(done));
  CHECK(int64_t(read_jsonl(fs::path(dir) / "metrics.jsonl").size()) == done);
  const Result smp =
      run_cli({"sample", "--checkpoint", (fs::path(dir) / "checkpoints" / present.back()).string(),
               "--tokens", "5"},
              30);
  INFO("sample stderr: " << smp.err);
  CHECK(smp.code == 0);
}

TEST_CASE("resume (g): an owner failing past the root's restart budget stops the run (exit 4)",
          "[e2e][resume][faults]") {
  TempDir tmp;
  const std::string dir = tmp / "run";
  const Result r =
      run_cli(quick_train(dir) + Args{"--threads", "2", "--root-max-restarts", "0", "--inject",
                                      "crash:owner=0,step=3", "--checkpoint-every", "1"});
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.code == 4);
  CHECK(contains(r.err, "the owner of slice 0 failed (injected crash), past the root's restart"));
  // The two steps before it are safe, and the run continues from them.
  const json s = read_json(fs::path(dir) / "summary.json");
  CHECK(s.at("steps").get<int64_t>() == 2);
  CHECK(checkpoint_files(fs::path(dir) / "checkpoints").back() == ckpt_name(2));
}

// Finding: when the tree gives up, the restarts that happened are not counted in summary.json
// (restarts 0) and spheres.json is an empty array.
TEST_CASE("resume (g): a run that gave up still reports its restarts and spheres",
          "[e2e][resume][faults]") {
  TempDir tmp;
  const std::string dir = tmp / "run";
  const Result r = run_cli(quick_train(dir) + Args{"--chaos", "0.9", "--root-max-restarts", "1",
                                                   "--max-restarts", "1", "--spheres", "3"});
  REQUIRE(r.code == 4);
  const json s = read_json(fs::path(dir) / "summary.json");
  INFO("summary: " << s.dump());
  CHECK(s.value("restarts", 0) + s.value("subtree_restarts", 0) > 0);
  const json sp = read_json(fs::path(dir) / "spheres.json");
  INFO("spheres: " << sp.dump());
  CHECK(sp.size() == 3);
}

TEST_CASE("resume (h): --keep K keeps exactly the last K checkpoints", "[e2e][resume]") {
  TempDir tmp;
  const std::string dir = tmp / "run";
  const Result r = run_cli(quick_train(dir) + Args{"--keep", "2", "--checkpoint-every", "2"});
  INFO("stderr: " << r.err);
  REQUIRE(r.code == 0);
  CHECK(checkpoint_files(fs::path(dir) / "checkpoints") ==
        std::vector<std::string>{ckpt_name(4), ckpt_name(6)});
}

// Finding: --resume of a run that had already finished rewrites summary.json with final_loss 0
// (and tokens_per_s 0): the finished run's summary is lost.
TEST_CASE("resume: --resume of a finished run keeps its summary", "[e2e][resume]") {
  TempDir tmp;
  const std::string dir = tmp / "run";
  REQUIRE(run_cli(long_train(dir)).code == 0);
  const json before = read_json(fs::path(dir) / "summary.json");
  const Result r = run_cli(long_train(dir) + Args{"--resume"});
  REQUIRE(r.code == 0);
  const json after = read_json(fs::path(dir) / "summary.json");
  INFO("before: " << before.dump() << "\nafter: " << after.dump());
  CHECK(after.at("final_loss") == before.at("final_loss"));
  CHECK(after.at("weights_sha256") == before.at("weights_sha256"));
  CHECK(contains(r.out, "final loss "));
  CHECK(!contains(r.out, "final loss 0.0000"));
}

// Finding: a new run (no --resume) in a run folder that holds checkpoints of an earlier, longer
// run deletes its own checkpoints, the final one included, as soon as it writes them: pruning
// keeps the K highest step numbers, which are the old run's. summary.json then names a file that
// does not exist, and --resume of the new run finds only the old run's checkpoints.
TEST_CASE("resume: a new run in a used run folder keeps its own final checkpoint",
          "[e2e][resume]") {
  TempDir tmp;
  const std::string dir = tmp / "run";
  const fs::path ckdir = fs::path(dir) / "checkpoints";
  const Args keep2 = {"--keep", "2", "--checkpoint-every", "3"};
  REQUIRE(run_cli(quick_train(dir) + keep2 + Args{"--steps", "12"}).code == 0);
  REQUIRE(checkpoint_files(ckdir) == std::vector<std::string>{ckpt_name(9), ckpt_name(12)});

  const Result r = run_cli(quick_train(dir) + keep2);  // 6 steps, same folder
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  INFO("checkpoints now: " << [&] {
    std::string s;
    for (const auto& n : checkpoint_files(ckdir)) s += n + " ";
    return s;
  }());
  if (r.code == 2) {
    // Refusing a used folder is fine too, with one line and nothing touched.
    CHECK(r.err_lines().size() == 1);
    CHECK(checkpoint_files(ckdir) == std::vector<std::string>{ckpt_name(9), ckpt_name(12)});
    return;
  }
  REQUIRE(r.code == 0);
  const json s = read_json(fs::path(dir) / "summary.json");
  const std::string final_ckpt = s.value("checkpoint", std::string());
  CHECK(fs::exists(final_ckpt));
  CHECK(fs::exists(ckdir / ckpt_name(6)));
  const Result again = run_cli(quick_train(dir) + keep2 + Args{"--resume"});
  INFO("resume stdout: " << again.out << "\nresume stderr: " << again.err);
  CHECK(again.code == 0);
  CHECK(printed_hash(again) == printed_hash(r));
}
