// End-to-end tests of `cllm train` and `cllm sample` run as a user runs them: bad input, the run
// folder, exactness of the printed weights hash across sphere counts, fan-outs, backends and
// injected faults, config files, sampling.
#include <catch2/catch.hpp>

#include "cli_util.hpp"

using namespace e2e;

namespace {

struct BadInput {
  std::string name;
  Args args;
  std::vector<std::string> needles;  // each must appear in the one error line
};

// Exit code 2, exactly one line on stderr, "cllm: error: ..." naming the problem; no crash, no
// hang, no training.
void check_bad_input(const BadInput& c) {
  INFO(describe(c.args));
  const Result r = run_cli(c.args, 30);
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  CHECK(r.code == 2);
  const auto lines = r.err_lines();
  CHECK(lines.size() == 1);
  REQUIRE(!lines.empty());
  CHECK(lines[0].rfind("cllm: error: ", 0) == 0);
  for (const auto& n : c.needles) CHECK(contains(lines[0], n));
  CHECK(!contains(r.err, "dumped core"));
  CHECK(!contains(r.out, "weights sha256"));
}

// Runs quick_train + extra in a fresh folder; the weights hash it printed ("" if none).
struct Trained {
  Result r;
  std::string hash;
  json summary;
};

Trained train_quick(const TempDir& tmp, const std::string& name, const Args& extra) {
  const std::string dir = tmp / name;
  Trained t;
  t.r = run_cli(quick_train(dir) + extra);
  t.hash = printed_hash(t.r);
  if (fs::exists(fs::path(dir) / "summary.json"))
    t.summary = read_json(fs::path(dir) / "summary.json");
  return t;
}

}  // namespace

TEST_CASE("bad input: exit 2 and one line naming the problem", "[e2e][cli]") {
  TempDir tmp;
  const std::string corpus = corpus_file();
  const std::string missing = tmp / "no-such-corpus.txt";
  const std::string empty = tmp / "empty.txt";
  write_file(empty, "");
  const std::string empty_dir = tmp / "empty-folder";
  fs::create_directories(empty_dir);
  const std::string short_corpus = tmp / "short.txt";
  write_file(short_corpus, "In the beginning was");  // 20 bytes < one window of 33
  const std::string bad_cfg = tmp / "bad.cfg";
  write_file(bad_cfg, "steps = 6\nbogus_key = 3\n");
  const std::string missing_cfg = tmp / "missing.cfg";

  // Checkpoints for `cllm sample`: a truncated one and a text file.
  const std::string ok_dir = tmp / "ok";
  const Result ok = run_cli(quick_train(ok_dir));
  REQUIRE(ok.code == 0);
  const fs::path final_ckpt = fs::path(ok_dir) / "checkpoints" / ckpt_name(6);
  REQUIRE(fs::exists(final_ckpt));
  const std::string truncated = tmp / "truncated.safetensors";
  write_file(truncated, read_file(final_ckpt).substr(0, 1000));
  const std::string missing_ckpt = tmp / "missing.safetensors";

  const std::string rd = tmp / "run";
  const std::vector<BadInput> cases = {
      {"unknown option", quick_train(rd) + Args{"--no-such-option"}, {"--no-such-option"}},
      {"--steps abc", quick_train(rd) + Args{"--steps", "abc"}, {"--steps", "abc"}},
      {"missing --corpus path", quick_train(rd, missing), {missing}},
      {"empty corpus file", quick_train(rd, empty), {empty, "empty"}},
      {"empty corpus folder", quick_train(rd, empty_dir), {empty_dir}},
      {"--spheres 0", quick_train(rd) + Args{"--spheres", "0"}, {"--spheres"}},
      {"--batch 10 --micro-batch 4",
       quick_train(rd) + Args{"--batch", "10", "--micro-batch", "4"},
       {"10", "micro-batch", "4"}},
      {"--context 100000", quick_train(rd) + Args{"--context", "100000"}, {"--context", "100000"}},
      {"corpus shorter than a window", quick_train(rd, short_corpus), {short_corpus}},
      {"--model huge", quick_train(rd) + Args{"--model", "huge"}, {"huge"}},
      {"--backend foo", quick_train(rd) + Args{"--backend", "foo"}, {"--backend", "foo"}},
      {"--inject names a sphere that does not exist",
       quick_train(rd) + Args{"--spheres", "4", "--inject", "crash:sphere=99,step=1"},
       {"99"}},
      {"--inject malformed", quick_train(rd) + Args{"--inject", "bogus"}, {"bogus"}},
      {"--warmup not shorter than the run", quick_train(rd) + Args{"--warmup", "6"}, {"--warmup"}},
      {"lr x weight decay >= 1",
       quick_train(rd) + Args{"--lr", "0.5", "--weight-decay", "2"},
       {"weight decay"}},
      {"config file that is a folder", quick_train(rd) + Args{"--config", empty_dir}, {empty_dir}},
      {"more spheres with work than memory holds",
       quick_train(rd) + Args{"--model", "base", "--context", "32", "--spheres", "200000",
                              "--batch", "400000", "--micro-batch", "2"},
       {"GiB", "--spheres"}},
      {"config file with an unknown key",
       quick_train(rd) + Args{"--config", bad_cfg},
       {bad_cfg, "bogus_key"}},
      {"missing config file", quick_train(rd) + Args{"--config", missing_cfg}, {missing_cfg}},
      {"sample: no --checkpoint", {"sample", "--tokens", "5"}, {"--checkpoint"}},
      {"sample: missing file", {"sample", "--checkpoint", missing_ckpt}, {missing_ckpt}},
      {"sample: truncated checkpoint",
       {"sample", "--checkpoint", truncated},
       {truncated, "truncated"}},
      {"sample: a text file", {"sample", "--checkpoint", corpus}, {corpus}},
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.name) {
      check_bad_input(c);
    }
  }
}

// Finding: an unknown command prints the error line and then the 5-line usage on stderr.
TEST_CASE("bad input: unknown command gets one line on stderr", "[e2e][cli]") {
  check_bad_input({"cllm frobnicate", {"frobnicate"}, {"frobnicate"}});
}

TEST_CASE("train: a normal run and its run folder", "[e2e][cli]") {
  TempDir tmp;
  const fs::path dir = tmp / "run";
  // A generous deadline: on a slow machine a kill would be a (harmless) restart, and this test
  // counts restarts.
  const Result r =
      run_cli(quick_train(dir.string()) + Args{"--spheres", "3", "--deadline-floor", "600"});
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.code == 0);

  // The last line is the weights hash.
  const std::string hash = printed_hash(r);
  CHECK(hash.size() == 64);

  // Every file of the run folder.
  for (const char* f :
       {"config.json", "metrics.jsonl", "spheres.json", "summary.json", "sample.txt"})
    CHECK(fs::is_regular_file(dir / f));
  CHECK(checkpoint_files(dir / "checkpoints") == std::vector<std::string>{ckpt_name(6)});
  CHECK(!read_file(dir / "sample.txt").empty());
  const json config = read_json(dir / "config.json");
  CHECK(config.is_object());

  // metrics.jsonl: one row per step.
  const auto rows = read_jsonl(dir / "metrics.jsonl");
  REQUIRE(rows.size() == 6);
  for (size_t i = 0; i < rows.size(); ++i) {
    INFO("row " << i << ": " << rows[i].dump());
    CHECK(rows[i].at("step") == int64_t(i + 1));
    for (const char* k : {"loss", "lr", "grad_norm", "tokens_per_s", "step_ms"}) {
      CHECK(rows[i].contains(k));
      CHECK(rows[i][k].is_number());
    }
  }
  // --eval-every 3: validation at steps 3 and 6.
  CHECK(rows[2].contains("val_loss"));
  CHECK(rows[5].contains("val_loss"));

  // summary.json
  const json s = read_json(dir / "summary.json");
  INFO("summary: " << s.dump());
  for (const char* k :
       {"steps", "spheres", "tokens_per_s", "step_ms_median", "peak_rss_mb", "final_loss",
        "val_loss", "weights_sha256", "restarts", "deadline_kills", "subtree_restarts"})
    CHECK(s.contains(k));
  CHECK(s.value("steps", -1) == 6);
  CHECK(s.value("spheres", -1) == 3);
  CHECK(s.value("weights_sha256", std::string()) == hash);
  CHECK(s.value("restarts", -1) == 0);
  CHECK(s.value("deadline_kills", -1) == 0);
  CHECK(s.value("subtree_restarts", -1) == 0);
  CHECK(s.value("final_loss", 0.0) == rows[5].at("loss").get<double>());
  CHECK(s.value("val_loss", 0.0) == rows[5].at("val_loss").get<double>());
  CHECK(s.value("tokens_per_s", 0.0) > 0);
  CHECK(s.value("peak_rss_mb", 0.0) > 0);

  // spheres.json: one entry per sphere; 6 steps x 4 shards computed once each.
  const json sp = read_json(dir / "spheres.json");
  REQUIRE(sp.is_array());
  REQUIRE(sp.size() == 3);
  int64_t shards = 0;
  for (size_t i = 0; i < sp.size(); ++i) {
    INFO("sphere " << sp[i].dump());
    for (const char* k : {"id", "level", "parent", "group", "shards", "compute_ms", "wait_ms",
                          "reduce_ms", "restarts"})
      CHECK(sp[i].contains(k));
    CHECK(sp[i].value("id", -9) == int(i));
    CHECK(sp[i].value("level", -9) == (i == 0 ? 0 : 1));
    CHECK(sp[i].value("parent", -9) == (i == 0 ? -1 : 0));
    CHECK(sp[i].value("group", -9) == int(i % 12));
    CHECK(sp[i].value("restarts", -9) == 0);
    shards += sp[i].value("shards", int64_t(0));
  }
  CHECK(shards == 6 * 4);
}

TEST_CASE("train: a corpus folder is read recursively, binary files skipped", "[e2e][cli]") {
  TempDir tmp;
  const std::string text = english_corpus(48 * 1024, 7);
  const fs::path folder = tmp.path / "corpus";
  fs::create_directories(folder / "sub" / "deeper");
  write_file(folder / "a.txt", text.substr(0, 20000));
  write_file(folder / "sub" / "deeper" / "b.txt", text.substr(20000));
  std::string blob =
      "\x7f"
      "ELF";
  blob += std::string(500, '\0');  // NUL bytes: binary
  write_file(folder / "sub" / "blob.bin", blob);
  const std::string dir = tmp / "run";
  const Result r = run_cli(quick_train(dir, folder.string()));
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.code == 0);
  CHECK(printed_hash(r).size() == 64);
  CHECK(read_json(fs::path(dir) / "config.json").value("corpus_files", -1) == 2);
  CHECK(contains(r.out + r.err, "binary"));
}

TEST_CASE("train: --print-topology and --help", "[e2e][cli]") {
  TempDir tmp;
  SECTION("--print-topology --spheres 1741 --fanout 12") {
    const std::string dir = tmp / "not-created";
    const Result r = run_cli(
        quick_train(dir) + Args{"--print-topology", "--spheres", "1741", "--fanout", "12"}, 20);
    INFO("stderr: " << r.err);
    CHECK(r.code == 0);
    CHECK(contains(r.out, "4 levels: 1 12 144 1584"));
    CHECK(r.err.empty());
    CHECK(!fs::exists(dir));
  }
  SECTION("--print-topology reports the workspace per sphere and the owners") {
    const Result r = run_cli(
        quick_train(tmp / "nope") + Args{"--print-topology", "--spheres", "5", "--threads", "3"},
        20);
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.code == 0);
    // A computing sphere holds activations and one float gradient, no int64 sum of its own.
    CHECK(contains(r.out, "workspace per computing sphere: "));
    CHECK(contains(r.out, " + one float gradient "));
    CHECK(contains(r.out, "in 3 owner slices of 4096-element blocks"));
    CHECK(!contains(r.out, "recomputed"));
  }
  SECTION("--print-topology --recompute: a smaller workspace, said so") {
    // The activations in MiB, as printed: "activations X MiB".
    const auto activations = [](const std::string& out) {
      const size_t at = out.find("activations ");
      REQUIRE(at != std::string::npos);
      return std::stod(out.substr(at + 12));
    };
    const Args shape = {"--print-topology", "--d-model", "64", "--layers", "6", "--heads", "2"};
    const Result kept = run_cli(quick_train(tmp / "nope") + shape, 20);
    const Result again = run_cli(quick_train(tmp / "nope") + shape + Args{"--recompute"}, 20);
    INFO("stdout: " << kept.out << "\n" << again.out << "\nstderr: " << again.err);
    REQUIRE(kept.code == 0);
    REQUIRE(again.code == 0);
    CHECK(contains(again.out, "MiB, recomputed + one float gradient"));
    CHECK(activations(again.out) < activations(kept.out));  // the bytes: tests/core
  }
  SECTION("a run that fits only with --recompute is refused with that hint") {
    // Deep and long: activations dominate (about 0.7 GiB per sphere, 0.1 GiB recomputed).
    const Args shape = {"--d-model", "64",   "--layers",      "64", "--heads", "2",
                        "--context", "4096", "--micro-batch", "1"};
    const Result plan = run_cli(quick_train(tmp / "nope") + shape + Args{"--print-topology"}, 20);
    INFO("plan: " << plan.out << plan.err);
    REQUIRE(plan.code == 0);
    const size_t w = plan.out.find("workspace per computing sphere: ");
    const size_t a = plan.out.find(" GiB available");
    REQUIRE(w != std::string::npos);
    REQUIRE(a != std::string::npos);  // (a machine whose free memory is unknown checks nothing)
    const double per_sphere_gib = std::stod(plan.out.substr(w + 32)) / 1024;
    const double avail_gib = std::stod(plan.out.substr(plan.out.rfind(' ', a - 1) + 1));
    // Just too many spheres without recomputing; several times fewer bytes with it.
    const int n = int(0.9 * avail_gib / per_sphere_gib) + 2;
    const std::string spheres = std::to_string(n);
    const Result r = run_cli(
        quick_train(tmp / "big") + shape + Args{"--spheres", spheres, "--batch", spheres}, 60);
    INFO(r.err);
    CHECK(r.code == 2);
    CHECK(r.err_lines().size() == 1);
    CHECK(contains(r.err, "--recompute would fit"));
    CHECK(!fs::exists(tmp / "big"));
  }
  SECTION("train --help") {
    const Result r = run_cli({"train", "--help"}, 20);
    CHECK(r.code == 0);
    CHECK(contains(r.out, "usage: cllm train"));
    CHECK(contains(r.out, "--resume"));
  }
  SECTION("sample --help") {
    const Result r = run_cli({"sample", "--help"}, 20);
    CHECK(r.code == 0);
    CHECK(contains(r.out, "usage: cllm sample"));
  }
  SECTION("--help") {
    const Result r = run_cli({"--help"}, 20);
    CHECK(r.code == 0);
    CHECK(contains(r.out, "train"));
    CHECK(contains(r.out, "sample"));
  }
}

TEST_CASE("exactness: the same weights for any sphere count, fan-out, backend and faults",
          "[e2e][cli][exact]") {
  TempDir tmp;
  const Trained ref = train_quick(tmp, "ref", {"--spheres", "1"});
  INFO("reference stderr: " << ref.r.err);
  REQUIRE(ref.r.code == 0);
  REQUIRE(ref.hash.size() == 64);

  struct Variant {
    std::string name;
    Args extra;
    size_t spheres_json;  // entries expected in spheres.json (0: not checked)
  };
  const std::vector<Variant> variants = {
      {"2 spheres, 2 threads", {"--spheres", "2", "--threads", "2"}, 2},
      {"13 spheres, fan-out 3, 1 thread",
       {"--spheres", "13", "--fanout", "3", "--threads", "1"},
       13},
      {"157 spheres, fan-out 12", {"--spheres", "157", "--fanout", "12"}, 157},
      {"mutex baseline, 2 workers", {"--backend", "mutex", "--spheres", "2"}, 0},
      // Activation checkpointing: the blocks' forward pass again in the backward pass.
      {"3 spheres recomputing activations", {"--spheres", "3", "--recompute"}, 3},
      {"barrier baseline recomputing activations",
       {"--backend", "barrier", "--spheres", "2", "--recompute"},
       0},
      {"barrier baseline, 3 workers", {"--backend", "barrier", "--spheres", "3"}, 0},
      // --sync: the old name of --backend, the same option.
      {"barrier baseline, 3 workers, named with --sync",
       {"--sync", "barrier", "--spheres", "3"},
       0},
  };
  int n = 0;
  for (const auto& v : variants) {
    DYNAMIC_SECTION(v.name) {
      const std::string name = "v" + std::to_string(n++);
      const Trained t = train_quick(tmp, name, v.extra);
      INFO(describe(v.extra) << "\nstderr: " << t.r.err);
      CHECK(t.r.code == 0);
      CHECK(t.hash == ref.hash);
      if (v.spheres_json) {
        const json sp = read_json(fs::path(tmp / name) / "spheres.json");
        CHECK(sp.size() == v.spheres_json);
      }
    }
  }
  SECTION("injected crash and hang") {
    const Trained t =
        train_quick(tmp, "inject",
                    {"--inject", "crash:sphere=1,step=2", "--inject", "hang:sphere=2,step=3",
                     "--spheres", "4", "--deadline-floor", "0.5"});
    INFO("stdout: " << t.r.out << "\nstderr: " << t.r.err << "\nsummary: " << t.summary.dump());
    CHECK(t.r.code == 0);
    CHECK(t.hash == ref.hash);
    CHECK(t.summary.value("restarts", 0) >= 2);
    CHECK(t.summary.value("deadline_kills", 0) >= 1);
  }
  SECTION("an owner of the step's sums crashes: respawned, its round computed again") {
    const Trained t = train_quick(
        tmp, "owner", {"--inject", "crash:owner=1,step=2", "--spheres", "3", "--threads", "2"});
    INFO("stdout: " << t.r.out << "\nstderr: " << t.r.err << "\nsummary: " << t.summary.dump());
    CHECK(t.r.code == 0);
    CHECK(t.hash == ref.hash);
    CHECK(t.summary.value("restarts", 0) == 1);
    CHECK(contains(t.r.err, "the owner of slice 1 failed in step 2: injected crash"));
  }
  SECTION("chaos") {
    const Trained t = train_quick(tmp, "chaos",
                                  {"--chaos", "0.2", "--chaos-seed", "3", "--spheres", "6",
                                   "--max-restarts", "100", "--root-max-restarts", "100"});
    INFO("stdout: " << t.r.out << "\nstderr: " << t.r.err << "\nsummary: " << t.summary.dump());
    CHECK(t.r.code == 0);
    CHECK(t.hash == ref.hash);
    CHECK(t.summary.value("restarts", 0) > 0);
  }
}

TEST_CASE("config file: same result as the command line, and the command line wins",
          "[e2e][cli][config]") {
  TempDir tmp;
  const std::string cfg = tmp / "run.cfg";
  write_file(cfg,
             "# quick settings\n"
             "corpus = \"" +
                 corpus_file() +
                 "\"\n"
                 "model = tiny\n"
                 "context = 32\n"
                 "batch = 8\n"
                 "micro-batch = 2\n"
                 "steps = 6\n"
                 "eval-every = 3\n"
                 "sample-tokens = 20\n"
                 "progress = plain\n");
  const Result cli6 = run_cli(quick_train(tmp / "cli6"));
  const Result cli7 = run_cli(quick_train(tmp / "cli7") + Args{"--steps", "7"});
  REQUIRE(cli6.code == 0);
  REQUIRE(cli7.code == 0);
  REQUIRE(printed_hash(cli6) != printed_hash(cli7));

  SECTION("--config FILE") {
    const Result r = run_cli({"train", "--config", cfg, "--run-dir", tmp / "f6"});
    INFO("stderr: " << r.err);
    CHECK(r.code == 0);
    CHECK(printed_hash(r) == printed_hash(cli6));
  }
  SECTION("--config=FILE") {
    const Result r = run_cli({"train", "--config=" + cfg, "--run-dir", tmp / "f6b"});
    INFO("stderr: " << r.err);
    CHECK(r.code == 0);
    CHECK(printed_hash(r) == printed_hash(cli6));
  }
  SECTION("the command line overrides the file, before or after --config") {
    const Result a = run_cli({"train", "--config", cfg, "--steps", "7", "--run-dir", tmp / "f7a"});
    const Result b = run_cli({"train", "--steps", "7", "--config", cfg, "--run-dir", tmp / "f7b"});
    INFO("stderr: " << a.err << b.err);
    CHECK(a.code == 0);
    CHECK(b.code == 0);
    CHECK(printed_hash(a) == printed_hash(cli7));
    CHECK(printed_hash(b) == printed_hash(cli7));
    CHECK(read_json(fs::path(tmp / "f7a") / "summary.json").value("steps", 0) == 7);
  }
}

TEST_CASE("sample: continues the prompt, the same for the same seed", "[e2e][cli][sample]") {
  TempDir tmp;
  const fs::path dir = tmp / "run";
  REQUIRE(run_cli(quick_train(dir.string())).code == 0);
  const std::string ckpt = (dir / "checkpoints" / ckpt_name(6)).string();
  const Args args = {"sample",   "--checkpoint", ckpt,     "--prompt", "In the",
                     "--tokens", "30",           "--seed", "5"};
  const Result a = run_cli(args, 30);
  const Result b = run_cli(args, 30);
  INFO("stderr: " << a.err);
  REQUIRE(a.code == 0);
  REQUIRE(b.code == 0);
  CHECK(a.out.rfind("In the", 0) == 0);
  CHECK(a.out.size() > std::string("In the").size());
  CHECK(a.out == b.out);
  CHECK(a.err.empty());  // bfloat16 decoding weights: deterministic too; a bad precision is refused
                         // by name.
  Args half = args;
  half.insert(half.end(), {"--decode-precision", "bf16"});
  const Result c = run_cli(half, 30), d = run_cli(half, 30);
  INFO("stderr: " << c.err);
  REQUIRE(c.code == 0);
  CHECK(c.out.rfind("In the", 0) == 0);
  CHECK(c.out == d.out);
  Args bad = args;
  bad.insert(bad.end(), {"--decode-precision", "fp16"});
  const Result e = run_cli(bad, 30);
  CHECK(e.code != 0);
  CHECK(e.err.find("--decode-precision") != std::string::npos);
}

// Finding: a run folder whose checkpoints/ cannot be created ends with exit code 1, which is
// none of the documented codes (2 bad input, 5 checkpoint write error).
TEST_CASE("train: an unwritable run folder gets a documented exit code", "[e2e][cli]") {
  TempDir tmp;
  const fs::path dir = tmp / "run";
  fs::create_directories(dir);
  write_file(dir / "checkpoints", "a file where the checkpoints folder should be\n");
  const Result r = run_cli(quick_train(dir.string()));
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK((r.code == 2 || r.code == 5));
  CHECK(r.err_lines().size() == 1);
  CHECK(contains(r.err, "checkpoints"));
}

namespace {
// quick_train into a fresh run folder in `tmp` with a folder in the place of the final
// checkpoint: the rename over it fails.
Result train_with_blocked_final_checkpoint(const TempDir& tmp) {
  const fs::path dir = tmp / "run";
  fs::create_directories(dir / "checkpoints" / ckpt_name(6));
  return run_cli(quick_train(dir.string()));
}
}  // namespace

TEST_CASE("train: a checkpoint that cannot be written gives exit code 5", "[e2e][cli]") {
  TempDir tmp;
  const Result r = train_with_blocked_final_checkpoint(tmp);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.code == 5);
  CHECK(contains(r.out + r.err, ckpt_name(6)));
  CHECK(printed_hash(r).size() == 64);
}

// Finding: the checkpoint write error of exit code 5 is printed on stdout; stderr stays empty.
TEST_CASE("train: a checkpoint write error is reported on stderr", "[e2e][cli]") {
  TempDir tmp;
  const Result r = train_with_blocked_final_checkpoint(tmp);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.code == 5);
  CHECK(contains(r.err, ckpt_name(6)));
}

TEST_CASE("train: a flag set to false in a config file stays off", "[e2e][cli]") {
  TempDir tmp;
  const fs::path cfg = tmp / "flags.cfg";
  write_file(cfg, "print-topology = false\nresume = no\n");
  const Result r = run_cli(quick_train(tmp / "run") + Args{"--config", cfg.string()});
  INFO("stderr: " << r.err);
  REQUIRE(r.code == 0);
  CHECK(printed_hash(r).size() == 64);
}

TEST_CASE("train: two processes never share a run folder", "[e2e][cli]") {
  TempDir tmp;
  const std::string dir = tmp / "run";
  Background first(quick_train(dir) + Args{"--steps", "400", "--checkpoint-every", "50"});
  REQUIRE(first.wait_until([&] { return count_newlines(fs::path(dir) / "metrics.jsonl") >= 2; }));
  const Result second = run_cli(quick_train(dir) + Args{"--steps", "400", "--resume"});
  INFO("stderr: " << second.err);
  CHECK(second.code == 2);
  CHECK(contains(second.err, "in use"));
  first.signal(SIGKILL);
  first.wait();
}
