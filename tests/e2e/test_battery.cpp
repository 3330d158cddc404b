// The bad-input battery (issue 13): many wrong, broken or odd inputs, each run as a user would run
// it, in a folder of its own that is also the process's working folder. For every bad input:
// exit 2, exactly one line on stderr ("cllm: error: ...") naming the problem, no training, and
// every file that was in the folder before is byte-identical afterwards, with nothing new in it
// (no empty runs/<date-time>, no temporaries). Odd but valid input (paths that are not UTF-8,
// subnormal numbers, config files with a byte-order mark and comments, huge sparse files in a
// corpus folder) is accepted and recorded safely. Cases run in parallel, each under a timeout.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include <catch2/catch.hpp>

#include "cli_util.hpp"
#include "run/sysinfo.hpp"

using namespace e2e;

namespace {

// Each process's limit. Bad input fails in milliseconds; the limit only turns a hang into a
// failure (exit 137), generously for sanitizer builds on a loaded machine.
constexpr int kTimeoutS = 120;

struct Expect {
  int code = 2;                      // -1: any (the case's check decides)
  std::vector<std::string> needles;  // each must appear in the error line
  size_t lines = 1;                  // lines on stderr (the error is the last)
};

struct Case {
  std::string name;
  // Prepares the case folder `d` and returns the arguments (the process runs in `d`).
  std::function<Args(const fs::path& d)> setup;
  Expect expect;
  // Optional checks of a case that is meant to succeed (run after the process, same thread as
  // the assertions).
  std::function<void(const fs::path& d, const Result& r)> check;
};

// ------------------------------------------------------------------------------------------------
// Folder snapshots: what is in a folder, to show that nothing was touched. Large files (sparse
// test files of 100 GB) are compared by size and modification time instead of their bytes.

struct Entry {
  char type = '?';  // f(ile), d(ir), l(ink), o(ther)
  uintmax_t size = 0;
  std::string bytes;  // files up to 64 MiB
  int64_t mtime_ns = 0;
  bool operator==(const Entry& o) const {
    return type == o.type && size == o.size && bytes == o.bytes && mtime_ns == o.mtime_ns;
  }
};

std::map<std::string, Entry> take_snapshot(const fs::path& dir) {
  std::map<std::string, Entry> out;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    Entry e;
    const auto st = it->symlink_status();
    const std::string rel = fs::relative(it->path(), dir).string();
    if (fs::is_symlink(st)) {
      e.type = 'l';
      e.bytes = fs::read_symlink(it->path()).string();
    } else if (fs::is_directory(st)) {
      e.type = 'd';
    } else if (fs::is_regular_file(st)) {
      e.type = 'f';
      e.size = fs::file_size(it->path());
      struct stat s {};
      ::stat(it->path().c_str(), &s);
      if (e.size <= (uintmax_t(64) << 20))
        e.bytes = read_file(it->path());
      else
        e.mtime_ns = int64_t(s.st_mtim.tv_sec) * 1000000000 + s.st_mtim.tv_nsec;
    } else {
      e.type = 'o';
    }
    out[rel] = e;
  }
  return out;
}

// What changed between two snapshots: files changed or gone, and new entries. A new `.lock` in a
// run folder is allowed (the session's lock file, created before the run folder is checked).
std::vector<std::string> changes(const std::map<std::string, Entry>& before,
                                 const std::map<std::string, Entry>& after) {
  std::vector<std::string> out;
  for (const auto& [k, e] : before) {
    const auto it = after.find(k);
    if (it == after.end())
      out.push_back("removed: " + k);
    else if (!(it->second == e))
      out.push_back("changed: " + k);
  }
  for (const auto& [k, e] : after)
    if (!before.count(k) && fs::path(k).filename() != ".lock") out.push_back("new: " + k);
  return out;
}

// ------------------------------------------------------------------------------------------------
// Running

// `cllm args...` in folder `cwd`, under `timeout -s KILL`.
Result run_in(const fs::path& cwd, const Args& args) {
  return run_cli(args, kTimeoutS, cwd);
}

struct Outcome {
  std::unique_ptr<TempDir> dir;
  Result r;
  std::vector<std::string> changed;
  std::string setup_error;
};

// Runs every case, `parallel` at a time; the assertions happen afterwards, in this thread
// (Catch2's are not thread-safe).
std::vector<Outcome> run_all(const std::vector<Case>& cases, unsigned parallel = 4) {
  std::vector<Outcome> out(cases.size());
  std::atomic<size_t> next{0};
  const auto worker = [&] {
    for (size_t i; (i = next++) < cases.size();) {
      Outcome& o = out[i];
      o.dir = std::make_unique<TempDir>();
      const fs::path d = o.dir->path;
      Args args;
      try {
        args = cases[i].setup(d);
      } catch (const std::exception& e) {
        o.setup_error = e.what();
        continue;
      }
      const auto before = take_snapshot(d);
      o.r = run_in(d, args);
      if (cases[i].expect.code > 0) o.changed = changes(before, take_snapshot(d));
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < parallel; ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  return out;
}

void check_outcomes(const std::vector<Case>& cases, const std::vector<Outcome>& outcomes) {
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const Outcome& o = outcomes[i];
    INFO("case: " << c.name);
    REQUIRE(o.setup_error == "");
    INFO("stdout: " << o.r.out);
    INFO("stderr: " << o.r.err);
    if (c.expect.code >= 0) CHECK(o.r.code == c.expect.code);
    CHECK(!contains(o.r.err, "dumped core"));
    if (c.expect.code > 0) {
      const auto lines = o.r.err_lines();
      CHECK(lines.size() == c.expect.lines);
      if (!lines.empty()) {
        CHECK(lines.back().rfind("cllm: error: ", 0) == 0);
        for (const auto& n : c.expect.needles) {
          INFO("needle: " << n);
          CHECK(contains(lines.back(), n));
        }
      }
      CHECK(!contains(o.r.out, "weights sha256"));  // nothing was trained
      for (const auto& ch : o.changed) FAIL_CHECK("the folder changed: " << ch);
    }
    if (c.check) c.check(o.dir->path, o.r);
  }
}

// ------------------------------------------------------------------------------------------------
// Shared inputs

// A finished quick run with checkpoints after steps 3 and 6, made once; cases copy it.
const fs::path& finished_run() {
  static TempDir tmp;
  static const fs::path dir = [] {
    const fs::path d = tmp.path / "run";
    const Result r = run_cli(quick_train(d.string()) + Args{"--checkpoint-every", "3"}, kTimeoutS);
    if (r.code != 0) throw std::runtime_error("the shared run failed: " + r.err);
    return d;
  }();
  return dir;
}

fs::path copy_run(const fs::path& d) {
  const fs::path run = d / "run";
  fs::copy(finished_run(), run, fs::copy_options::recursive);
  fs::remove(run / ".lock");
  return run;
}

fs::path ckpt(const fs::path& run, int step) {
  return run / "checkpoints" / ckpt_name(step);
}

// A new run's arguments without --run-dir (a runs/<date-time> folder in the working folder).
Args no_run_dir(const Args& extra = {}) {
  return Args{"train", "--corpus",   corpus_file(), "--model",         "tiny", "--context",
              "32",    "--batch",    "8",           "--micro-batch",   "2",    "--steps",
              "6",     "--progress", "plain",       "--sample-tokens", "0"} +
         extra;
}

// A new run in d/run.
Args in_run(const fs::path& d, const Args& extra = {}) {
  return quick_train((d / "run").string()) + extra;
}

// --resume of a run folder (its settings come from its config.json).
Args resume_run(const fs::path& run, const Args& extra = {}) {
  return Args{"train", "--run-dir", run.string(), "--resume", "--progress", "plain"} + extra;
}

Args config_run(const fs::path& d, const std::string& text) {
  write_file(d / "run.cfg", text);
  return no_run_dir({"--config", (d / "run.cfg").string()});
}

// A sparse file of `size` bytes that starts with `head`.
void sparse_file(const fs::path& p, uintmax_t size, const std::string& head = "") {
  write_file(p, head);
  fs::resize_file(p, size);
}

// A safetensors file whose header holds a number no double can hold (found by fuzzing: it escaped
// the reader as a JSON library exception).
void header_number_out_of_range(const fs::path& p) {
  std::string h = R"({"a":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}})";
  h.resize((h.size() + 7) / 8 * 8, ' ');
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = char((uint64_t(h.size()) >> (8 * i)) & 255);
  write_file(p, bytes + h + std::string(4, '\0'));
}

void flip_byte(const fs::path& p, uintmax_t from_end) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(-std::streamoff(from_end), std::ios::end);
  const char c = char(f.get());
  f.seekp(-std::streamoff(from_end), std::ios::end);
  f.put(char(c ^ 0x5a));
}

Case bad(std::string name, std::function<Args(const fs::path&)> setup,
         std::vector<std::string> needles, size_t lines = 1) {
  return Case{std::move(name), std::move(setup), Expect{2, std::move(needles), lines}, nullptr};
}

// ------------------------------------------------------------------------------------------------
// The cases

std::vector<Case> command_line_cases() {
  const auto with = [](Args extra) {
    return [extra](const fs::path&) { return no_run_dir(extra); };
  };
  return {
      bad("no command", [](auto&) { return Args{}; }, {"no command"}),
      bad("unknown command", [](auto&) { return Args{"frobnicate"}; }, {"frobnicate"}),
      bad("unknown option", with({"--no-such-option"}), {"--no-such-option"}),
      bad("unknown option with odd bytes", with({std::string("--x\x01\xff", 5)}),
          {"--x\\x01\\xff"}),
      bad("--steps abc", with({"--steps", "abc"}), {"--steps", "abc"}),
      bad("--steps 0", with({"--steps", "0"}), {"--steps"}),
      bad("--steps overflowing int64", with({"--steps", "99999999999999999999"}),
          {"--steps", "99999999999999999999"}),
      bad("--steps without its value", [](auto&) { return no_run_dir() + Args{"--steps"}; },
          {"--steps", "needs a value"}),
      bad("a flag given a value", with({"--resume=yes"}), {"--resume", "takes no value"}),
      bad("a stray argument", with({"extra"}), {"extra"}),
      bad("the removed --checkpoint-dir", with({"--checkpoint-dir", "x"}),
          {"--checkpoint-dir", "use --run-dir"}),
      bad("--lr nan", with({"--lr", "nan"}), {"--lr"}),
      bad("--lr inf", with({"--lr", "inf"}), {"--lr", "finite"}),
      bad("--lr 1e400 (overflows)", with({"--lr", "1e400"}), {"--lr", "too large"}),
      bad("--lr 1e-400 (underflows to 0)", with({"--lr", "1e-400"}), {"--lr", "too close to 0"}),
      bad("--lr 0", with({"--lr", "0"}), {"learning rate"}),
      bad("--clip -1 (was silently off)", with({"--clip", "-1"}), {"clip", ">= 0"}),
      bad("--epochs 0 (was ignored)", with({"--epochs", "0"}), {"--epochs", "> 0"}),
      bad("--epochs -2", with({"--epochs", "-2"}), {"--epochs"}),
      bad("--epochs with --steps", with({"--epochs", "1"}), {"--steps", "--epochs"}),
      bad("--inject past the run (was never fired)", with({"--inject", "crash:sphere=0,step=7"}),
          {"--inject", "past"}),
      bad("--inject step overflowing int64",
          with({"--inject", "crash:sphere=0,step=99999999999999999999"}),
          {"--inject", "out of range"}),
      bad("--inject malformed", with({"--inject", "bogus"}), {"bogus"}),
      bad("--inject of a sphere that does not exist",
          with({"--spheres", "4", "--inject", "crash:sphere=99,step=1"}), {"99"}),
      bad("--inject without a sphere", with({"--inject", "hang:step=1"}), {"sphere="}),
      bad("--inject of an unknown kind", with({"--inject", "explode:sphere=1,step=1"}),
          {"explode"}),
      bad("--inject at step 0", with({"--inject", "crash:sphere=1,step=0"}), {"from 1"}),
      bad("--inject of an owner that does not exist",
          with({"--threads", "2", "--inject", "crash:owner=2,step=1"}), {"owner 2", "2 owners"}),
      bad("--inject hanging an owner", with({"--inject", "hang:owner=0,step=1"}),
          {"an owner can only crash"}),
      bad("--inject naming a sphere and an owner",
          with({"--inject", "crash:sphere=0,owner=0,step=1"}), {"one sphere or one owner"}),
      bad("--inject with a thread-pool baseline",
          with({"--backend", "mutex", "--inject", "crash:sphere=1,step=1"}), {"--backend actors"}),
      bad("--spheres 0", with({"--spheres", "0"}), {"--spheres"}),
      bad("--fanout 0", with({"--fanout", "0"}), {"--fanout"}),
      bad("--threads 0", with({"--threads", "0"}), {"--threads"}),
      bad("--threads 4096 (ran for minutes: now at most 8 per core)", with({"--threads", "4096"}),
          {"--threads", "4096"}),
      bad("--batch not a multiple of --micro-batch", with({"--batch", "10", "--micro-batch", "4"}),
          {"10", "micro-batch", "4"}),
      bad("--context 100000", with({"--context", "100000"}), {"--context", "100000"}),
      bad("--d-model not divisible by --heads", with({"--d-model", "65", "--heads", "2"}),
          {"divisible"}),
      bad("--model huge", with({"--model", "huge"}), {"huge"}),
      bad("--backend foo", with({"--backend", "foo"}), {"--backend", "foo"}),
      bad("--sync foo (the old name)", with({"--sync", "foo"}), {"--backend", "foo"}),
      bad("--progress bogus", with({"--progress", "bogus"}), {"--progress"}),
      bad("--val-fraction 0.9", with({"--val-fraction", "0.9"}), {"--val-fraction"}),
      bad("--warmup as long as the run", with({"--warmup", "6"}), {"--warmup"}),
      bad("lr x weight decay >= 1", with({"--lr", "0.5", "--weight-decay", "2"}), {"weight decay"}),
      bad("--chaos 1", with({"--chaos", "1"}), {"--chaos"}),
      bad("--deadline-factor 1", with({"--deadline-factor", "1"}), {"deadline factor"}),
      bad("--keep 0", with({"--keep", "0"}), {"--keep"}),
      bad("--temperature -1", with({"--temperature", "-1"}), {"temperature"}),
      bad("--top-p 2", with({"--top-p", "2"}), {"top-p"}),
      bad("--resume without --run-dir", with({"--resume"}), {"--resume", "--run-dir"}),
      bad("more spheres with work than memory holds",
          with({"--model", "base", "--context", "32", "--spheres", "200000", "--batch", "400000",
                "--micro-batch", "2"}),
          {"GiB", "--spheres"}),
  };
}

std::vector<Case> corpus_cases() {
  const auto corpus_at = [](const fs::path& p) {
    Args a = no_run_dir();
    a[2] = p.string();  // the --corpus value
    return a;
  };
  const std::string text = english_corpus(4096, 7);
  return {
      bad("--corpus ''",
          [](auto&) {
            Args a = no_run_dir();
            a[2] = "";
            return a;
          },
          {"--corpus"}),
      bad("missing corpus", [=](const fs::path& d) { return corpus_at(d / "no-such.txt"); },
          {"no-such.txt"}),
      bad("empty corpus file",
          [=](const fs::path& d) {
            write_file(d / "e.txt", "");
            return corpus_at(d / "e.txt");
          },
          {"e.txt", "empty"}),
      bad("empty corpus folder",
          [=](const fs::path& d) {
            fs::create_directory(d / "c");
            return corpus_at(d / "c");
          },
          {"no text files"}),
      bad("corpus shorter than a window",
          [=](const fs::path& d) {
            write_file(d / "s.txt", "In the beginning");
            return corpus_at(d / "s.txt");
          },
          {"s.txt", "window"}),
      bad("binary corpus file",
          [=](const fs::path& d) {
            write_file(d / "b.bin", std::string("\x7f"
                                                "ELF\0\0\0\0binary",
                                                14));
            return corpus_at(d / "b.bin");
          },
          {"b.bin", "binary"}),
      bad("corpus folder of binary files only",
          [=](const fs::path& d) {
            fs::create_directory(d / "c");
            write_file(d / "c" / "a.bin", std::string(100, '\0'));
            return corpus_at(d / "c");
          },
          {"no text files", "1 binary file"}),
      bad("corpus folder of empty files only",
          [=](const fs::path& d) {
            fs::create_directory(d / "c");
            write_file(d / "c" / "a.txt", "");
            return corpus_at(d / "c");
          },
          {"only empty"}),
      bad("corpus that is a fifo",
          [=](const fs::path& d) {
            ::mkfifo((d / "f").c_str(), 0644);
            return corpus_at(d / "f");
          },
          {"neither"}),
      bad("corpus path with a line break (one line all the same)",
          [=](const fs::path& d) { return corpus_at(d / "a\nb.txt"); },
          {"a\\nb.txt", "does not exist"}),
      bad("100 GB sparse corpus file (binary: refused without reading it)",
          [=](const fs::path& d) {
            sparse_file(d / "huge.img", uintmax_t(100) << 30);
            return corpus_at(d / "huge.img");
          },
          {"huge.img", "binary"}),
      bad("100 GB corpus file of text (too large for memory)",
          [=](const fs::path& d) {
            sparse_file(d / "huge.txt", uintmax_t(100) << 30, english_corpus(16384));
            return corpus_at(d / "huge.txt");
          },
          {"huge.txt", "100.0 GiB", "memory"}),
      bad("corpus folder with a dangling symlink",
          [=](const fs::path& d) {
            fs::create_directory(d / "c");
            write_file(d / "c" / "a.txt", text);
            fs::create_symlink(d / "gone.txt", d / "c" / "b.txt");
            return corpus_at(d / "c");
          },
          {"b.txt", "missing"}),
      bad("--val-fraction leaves too little validation text",
          [=](const fs::path& d) {
            write_file(d / "s.txt", std::string(100, 'a'));
            return corpus_at(d / "s.txt") + Args{"--val-fraction", "0.05"};
          },
          {"validation"}),
  };
}

std::vector<Case> config_cases() {
  const auto cfg = [](std::string text) {
    return [text](const fs::path& d) { return config_run(d, text); };
  };
  return {
      bad("missing config file",
          [](const fs::path& d) {
            return no_run_dir({"--config", (d / "no.cfg").string()});
          },
          {"no.cfg"}),
      bad("config file that is a folder",
          [](const fs::path& d) {
            return no_run_dir({"--config", d.string()});
          },
          {"config file"}),
      bad("--config without a file", [](auto&) { return no_run_dir({"--config"}); }, {"--config"}),
      bad("config: unknown key (file and line named)", cfg("steps = 6\nbogus_key = 3\n"),
          {"run.cfg", "line 2", "bogus_key"}),
      bad("config: bad value (file and line named)", cfg("# x\nsteps = abc\n"),
          {"run.cfg", "line 2", "--steps", "abc"}),
      bad("config: bad value after a trailing comment", cfg("steps = 6 # six\nlr = x\n"),
          {"line 2", "--lr"}),
      bad("config: 2 GiB without a line break (refused before reading)",
          [](const fs::path& d) {
            sparse_file(d / "run.cfg", uintmax_t(2) << 30, "steps = ");
            return no_run_dir({"--config", (d / "run.cfg").string()});
          },
          {"run.cfg", "at most"}),
      bad("config: NUL and control bytes in a key (printed safely)",
          cfg(std::string("st\0e\x1bps = 6\n", 12)), {"line 1", "st\\x00e\\x1bps"}),
      bad("config: an unknown model (named with its line)", cfg("model = ti\x01ny\n"),
          {"line 1", "ti\\x01ny", "known: tiny"}),
      bad("config: a flag with a bad value", cfg("resume = maybe\n"), {"true or false"}),
      bad("config: a NUL byte in a value (the message was cut there)",
          cfg(std::string("backend = ac\0tors\n", 17)), {"line 1", "--backend", "ac\\x00tors"}),
      bad("config: an option without its value", cfg("steps\n"), {"needs a value"}),
      bad("config: the removed checkpoint-dir", cfg("checkpoint-dir = x\n"),
          {"line 1", "checkpoint-dir", "use --run-dir"}),
      bad("config: --config inside a config file", cfg("config = other.cfg\n"),
          {"unknown option 'config'"}),
      bad("config: nan", cfg("lr = nan  # comment\n"), {"line 1", "--lr"}),
      bad("config: '--steps = 3' (the dashes; was 'unknown option')", cfg("--steps = 3\n"),
          {"line 1", "without the dashes"}),
      // Dashes only: no option behind them (the fuzzer found this throwing out of the parser).
      bad("config: a name of dashes only", cfg("- = e\n"), {"line 1", "unknown option '-'"}),
      bad("config: a byte-order mark, then an error on line 3",
          cfg("\xEF\xBB\xBF# comment\r\nsteps = 6\r\nwarmup = 6\r\n"), {"--warmup"}),
  };
}

std::vector<Case> resume_cases() {
  return {
      bad("--resume of a missing folder",
          [](const fs::path& d) { return resume_run(d / "nothing"); },
          {"no run folder", "nothing"}),
      bad("--resume of a folder without checkpoints",
          [](const fs::path& d) {
            const auto run = copy_run(d);
            fs::remove_all(run / "checkpoints");
            return resume_run(run);
          },
          {"checkpoints"}),
      bad("--resume with only a corrupt checkpoint (one line: was a note and an error)",
          [](const fs::path& d) {
            const auto run = copy_run(d);
            fs::remove(ckpt(run, 3));
            flip_byte(ckpt(run, 6), 100);
            return resume_run(run);
          },
          {"no usable checkpoint", "ckpt-00000006"}),
      bad("--resume with only a foreign file named like a checkpoint",
          [](const fs::path& d) {
            const auto run = copy_run(d);
            fs::remove(ckpt(run, 3));
            write_file(ckpt(run, 6), "just some text, not a checkpoint at all\n");
            return resume_run(run);
          },
          {"no usable checkpoint", "ckpt-00000006"}),
      bad("--resume with only a truncated checkpoint",
          [](const fs::path& d) {
            const auto run = copy_run(d);
            fs::remove(ckpt(run, 3));
            fs::resize_file(ckpt(run, 6), 5000);
            return resume_run(run);
          },
          {"no usable checkpoint", "ckpt-00000006"}),
      bad("--resume with other settings",
          [](const fs::path& d) {
            return resume_run(copy_run(d), {"--batch", "16"});
          },
          {"other settings", "batch"}),
      bad("--resume with another model",
          [](const fs::path& d) {
            return resume_run(copy_run(d), {"--model", "small"});
          },
          {"model"}),
      bad("--resume on another corpus",
          [](const fs::path& d) {
            write_file(d / "other.txt", english_corpus(48 * 1024, 99));
            return resume_run(copy_run(d), {"--corpus", (d / "other.txt").string()});
          },
          {"data_sha256"}),
      bad("a new run into a folder with checkpoints",
          [](const fs::path& d) {
            copy_run(d);
            return in_run(d);
          },
          {"holds a previous run", "--resume"}),
      bad("a run folder that is a file",
          [](const fs::path& d) {
            write_file(d / "run", "x");
            return in_run(d);
          },
          {"run"}),
  };
}

std::vector<Case> sample_cases() {
  const auto sample = [](std::function<fs::path(const fs::path&)> make, Args extra = {}) {
    return [make, extra](const fs::path& d) {
      return Args{"sample", "--checkpoint", make(d).string(), "--tokens", "5"} + extra;
    };
  };
  const auto final_ckpt = [](const fs::path& d) { return ckpt(copy_run(d), 6); };
  return {
      bad("sample: no --checkpoint",
          [](auto&) {
            return Args{"sample", "--tokens", "5"};
          },
          {"--checkpoint"}),
      bad("sample: missing file", sample([](const fs::path& d) { return d / "no.safetensors"; }),
          {"no.safetensors"}),
      bad("sample: empty file", sample([](const fs::path& d) {
            write_file(d / "e.safetensors", "");
            return d / "e.safetensors";
          }),
          {"empty"}),
      bad("sample: truncated checkpoint", sample([=](const fs::path& d) {
            const auto p = final_ckpt(d);
            fs::resize_file(p, 1000);
            return p;
          }),
          {"truncated"}),
      bad("sample: a flipped byte in the weights", sample([=](const fs::path& d) {
            const auto p = final_ckpt(d);
            flip_byte(p, 64);
            return p;
          }),
          {"checksum mismatch"}),
      bad("sample: a flipped byte in the header", sample([=](const fs::path& d) {
            const auto p = final_ckpt(d);
            std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(40);
            f.put('#');
            return p;
          }),
          {"ckpt-00000006"}),
      bad("sample: a header number out of range (was exit 1 with a JSON library message)",
          sample([](const fs::path& d) {
            header_number_out_of_range(d / "big.safetensors");
            return d / "big.safetensors";
          }),
          {"big.safetensors", "out of range"}),
      bad("sample: a text file", sample([](auto&) { return fs::path(corpus_file()); }),
          {"not a safetensors file"}),
      bad("sample: a folder", sample([](const fs::path& d) { return d; }), {"not a regular file"}),
      bad("sample: --tokens -1", sample(final_ckpt, {"--tokens", "-1"}), {"--tokens"}),
      bad("sample: --top-k -1", sample(final_ckpt, {"--top-k", "-1"}), {"--top-k"}),
      bad("sample: --temperature nan", sample(final_ckpt, {"--temperature", "nan"}),
          {"--temperature"}),
      bad("sample: unknown option", sample(final_ckpt, {"--steps", "3"}), {"--steps"}),
  };
}

// Issue 19: files that are not regular (a FIFO blocks its reader until a writer comes, a device
// such as /dev/zero never ends), files larger than their limit, and outputs that would replace
// an input. Each is refused before anything is read or written.
fs::path fifo(const fs::path& p) {
  if (::mkfifo(p.c_str(), 0644) != 0) throw std::runtime_error("mkfifo failed");
  return p;
}

std::vector<Case> file_cases() {
  const auto encode = [](std::function<std::string(const fs::path&)> tok) {
    return [tok](const fs::path& d) { return Args{"tokenizer", "encode", "--tokenizer", tok(d)}; };
  };
  return {
      bad("tokenizer /dev/zero (grew without limit)", encode([](auto&) { return "/dev/zero"; }),
          {"/dev/zero", "not a regular file", "character device"}),
      bad("tokenizer that is a FIFO (blocked)",
          encode([](const fs::path& d) { return fifo(d / "tok.json").string(); }),
          {"tok.json", "FIFO"}),
      bad("tokenizer.json of 2 GiB (read whole)", encode([](const fs::path& d) {
            sparse_file(d / "tok.json", uintmax_t(2) << 30, "{");
            return (d / "tok.json").string();
          }),
          {"tok.json", "at most 64 MiB"}),
      bad("config file that is a FIFO",
          [](const fs::path& d) {
            return no_run_dir({"--config", fifo(d / "run.cfg").string()});
          },
          {"run.cfg", "FIFO"}),
      bad("corpus file that is a FIFO",
          [](const fs::path& d) {
            return Args{"tokenizer", "train", "--corpus", fifo(d / "c.txt").string(),
                        "--vocab",   "300",   "--out",    (d / "tok.json").string()};
          },
          {"c.txt", "regular file"}),
      bad("sample: a checkpoint that is a FIFO",
          [](const fs::path& d) {
            return Args{"sample", "--checkpoint", fifo(d / "c.safetensors").string()};
          },
          {"c.safetensors", "FIFO"}),
      bad("export: a checkpoint that is a FIFO (blocked)",
          [](const fs::path& d) {
            return Args{"export",   fifo(d / "c.safetensors").string(),
                        "--format", "gguf",
                        "--out",    (d / "m.gguf").string()};
          },
          {"c.safetensors", "FIFO"}),
      bad("cluster key that is a FIFO",
          [](const fs::path& d) {
            return Args{"node", "--join", "127.0.0.1:9", "--cluster-key", fifo(d / "key").string()};
          },
          {"key", "FIFO"}),
      bad("report of a run whose metrics.jsonl is a FIFO (blocked)",
          [](const fs::path& d) {
            const auto run = copy_run(d);
            fs::remove(run / "metrics.jsonl");
            fifo(run / "metrics.jsonl");
            return Args{"report", run.string(), "--out", (d / "r.html").string()};
          },
          {"metrics.jsonl", "FIFO"}),
      bad("serve of a run whose metrics.jsonl is a FIFO (ignored Ctrl-C)",
          [](const fs::path& d) {
            const auto run = copy_run(d);
            fs::remove(run / "metrics.jsonl");
            fifo(run / "metrics.jsonl");
            return Args{"serve", run.string(), "--port", "0"};
          },
          {"metrics.jsonl", "FIFO"}),
      bad("--resume of a run whose metrics.jsonl is a FIFO",
          [](const fs::path& d) {
            const auto run = copy_run(d);
            fs::remove(ckpt(run, 6));  // the run is not complete: it would append
            fs::remove(run / "metrics.jsonl");
            fifo(run / "metrics.jsonl");
            return resume_run(run);
          },
          {"metrics.jsonl", "FIFO"}),
      // Outputs (defects 1 and 2).
      bad("report --out the run's own metrics.jsonl (was replaced by the page)",
          [](const fs::path& d) {
            const auto run = copy_run(d);
            return Args{"report", run.string(), "--out", (run / "metrics.jsonl").string()};
          },
          {"metrics.jsonl", "same file"}),
      bad("report --out the run's own config.json, by another spelling",
          [](const fs::path& d) {
            const auto run = copy_run(d);
            return Args{"report", run.string(), "--out", "./run/../run/config.json"};
          },
          {"config.json", "same file"}),
      bad("report --out a symlink to the run's summary.json",
          [](const fs::path& d) {
            const auto run = copy_run(d);
            fs::create_symlink(run / "summary.json", d / "link.html");
            return Args{"report", run.string(), "--out", (d / "link.html").string()};
          },
          {"link.html", "same file"}),
      bad("report --out a file of another run",
          [](const fs::path& d) {
            const auto run = copy_run(d);
            fs::create_directory(d / "other");
            fs::copy(run, d / "other" / "run", fs::copy_options::recursive);
            return Args{"report", run.string(), "--out",
                        (d / "other" / "run" / "spheres.json").string()};
          },
          {"spheres.json", "run folder"}),
      bad("report --out a FIFO (was replaced by a regular file)",
          [](const fs::path& d) {
            const auto run = copy_run(d);
            return Args{"report", run.string(), "--out", fifo(d / "out.html").string()};
          },
          {"out.html", "FIFO", "not a regular file"}),
      bad("report --out '' (was ignored)",
          [](const fs::path& d) {
            return Args{"report", copy_run(d).string(), "--out", ""};
          },
          {"--out", "''"}),
      bad("report --out into a missing folder (the reason is named)",
          [](const fs::path& d) {
            return Args{"report", copy_run(d).string(), "--out", (d / "no" / "r.html").string()};
          },
          {"r.html", "folder", "does not exist"}),
      bad("report --out a folder",
          [](const fs::path& d) {
            fs::create_directory(d / "dir");
            return Args{"report", copy_run(d).string(), "--out", (d / "dir").string()};
          },
          {"dir", "folder"}),
      bad("tokenizer train --out the corpus (was replaced by the tokenizer)",
          [](const fs::path& d) {
            write_file(d / "c.txt", english_corpus());
            return Args{"tokenizer", "train", "--corpus", (d / "c.txt").string(),
                        "--vocab",   "300",   "--out",    (d / "c.txt").string()};
          },
          {"c.txt", "same file"}),
      bad("tokenizer train --out inside the corpus folder",
          [](const fs::path& d) {
            fs::create_directory(d / "c");
            write_file(d / "c" / "a.txt", english_corpus());
            return Args{"tokenizer", "train", "--corpus", (d / "c").string(),
                        "--vocab",   "300",   "--out",    (d / "c" / "tok.json").string()};
          },
          {"tok.json", "inside the input folder"}),
      bad("tokenizer train --out a run's config.json",
          [](const fs::path& d) {
            const auto run = copy_run(d);
            return Args{"tokenizer", "train", "--corpus", corpus_file(),
                        "--vocab",   "300",   "--out",    (run / "config.json").string()};
          },
          {"config.json", "run folder"}),
  };
}

// Issue 19: the node's options come from train's table (one limit each), and limits are named.
std::vector<Case> cluster_option_cases() {
  const auto node = [](Args extra) {
    return [extra](const fs::path&) { return Args{"node", "--join", "127.0.0.1:9"} + extra; };
  };
  const auto train = [](Args extra) {
    return [extra](const fs::path&) { return no_run_dir(extra); };
  };
  return {
      bad("node --threads 4096 (hung with 2,265 threads)", node({"--threads", "4096"}),
          {"--threads", "4096"}),
      bad("node --spheres 0", node({"--spheres", "0"}), {"--spheres"}),
      bad("node --connection-timeout 1e300 (overflowed)", node({"--connection-timeout", "1e300"}),
          {"--connection-timeout", "at most 3600"}),
      bad("node --cluster-key '' (meant no key)", node({"--cluster-key", ""}),
          {"--cluster-key", "''"}),
      bad("node --node-id with a space (failed only at the root)", node({"--node-id", "a b"}),
          {"--node-id", "a b"}),
      bad("node --node-id of 65 characters", node({"--node-id", std::string(65, 'n')}),
          {"--node-id", "64"}),
      bad("train --cluster-key '' (meant no key)",
          train({"--listen", "127.0.0.1:0", "--cluster-key", ""}), {"--cluster-key", "''"}),
      bad("train --connection-timeout 3601 (limit not named)",
          train({"--connection-timeout", "3601"}), {"--connection-timeout", "at most 3600"}),
      bad("train --join-timeout 1e7 (limit not named)", train({"--join-timeout", "1e7"}),
          {"--join-timeout", "at most 1e+06"}),
      bad("--plan-nodes without --print-topology (was ignored)", train({"--plan-nodes", "4"}),
          {"--plan-nodes", "--print-topology"}),
      bad("export to a mount that cannot be written (was exit 1)",
          [](const fs::path& d) {
            return Args{"export", copy_run(d).string(),     "--format", "gguf",
                        "--out",  "/proc/cllm-battery.gguf"};
          },
          {"cannot export", "/proc/cllm-battery.gguf"}),
      bad("--resume after the corpus changed in place (was 'made with other settings')",
          [](const fs::path& d) {
            write_file(d / "c.txt", english_corpus());
            const Result r = run_in(d, quick_train((d / "run").string(), (d / "c.txt").string()));
            if (r.code != 0) throw std::runtime_error("the case's run failed: " + r.err);
            write_file(d / "c.txt", english_corpus() + "One more line.\n");
            return resume_run(d / "run");
          },
          {"c.txt", "changed since checkpoint"}),
      bad("--min-nodes into a folder with a previous run (refused only after the wait)",
          [](const fs::path& d) {
            copy_run(d);
            return in_run(d, {"--listen", "127.0.0.1:0", "--min-nodes", "1"});
          },
          {"holds a previous run"}),
      bad("--resume --overwrite (--overwrite was ignored)",
          [](const fs::path& d) { return resume_run(copy_run(d), {"--overwrite"}); },
          {"--resume", "--overwrite", "not both"}),
  };
}

// A lock on a run folder, held as a running cllm holds it.
struct HeldLock {
  int fd = -1;
  ~HeldLock() {
    if (fd >= 0) ::close(fd);
  }
};

// A listening socket on a free loopback port, as another program holds it.
struct HeldPort {
  int fd = -1, port = 0;
  void take() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t n = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), n) != 0 || ::listen(fd, 1) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n) != 0)
      throw std::runtime_error("cannot hold a port");
    port = ntohs(a.sin_port);
  }
  ~HeldPort() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

TEST_CASE("battery: bad input gets exit 2, one line, and leaves every file as it was",
          "[e2e][battery]") {
  finished_run();  // made before the parallel cases copy it
  std::vector<Case> cases;
  for (auto* group : {&command_line_cases, &corpus_cases, &config_cases, &resume_cases,
                      &sample_cases, &file_cases, &cluster_option_cases})
    for (auto& c : group()) cases.push_back(std::move(c));
  // The lock is taken here, as a running cllm holds it, and kept until the end.
  HeldLock held;
  cases.push_back(bad("a run folder in use by another process",
                      [&held](const fs::path& d) {
                        const auto run = copy_run(d);
                        held.fd =
                            ::open((run / ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
                        if (held.fd < 0 || ::flock(held.fd, LOCK_EX | LOCK_NB) != 0)
                          throw std::runtime_error("cannot lock");
                        return resume_run(run);
                      },
                      {"in use"}));
  // A port held by another program: --listen says so (it read "tcp socket creation failed").
  HeldPort port;
  cases.push_back(bad("--listen on a port in use",
                      [&port](const fs::path&) {
                        port.take();
                        return no_run_dir({"--listen", "127.0.0.1:" + std::to_string(port.port)});
                      },
                      {"in use", "--listen"}));
  REQUIRE(cases.size() >= 60);
  const auto outcomes = run_all(cases);
  check_outcomes(cases, outcomes);
}

TEST_CASE("battery: odd but valid input is accepted and recorded safely", "[e2e][battery]") {
  const std::string bad_utf8 = "caf\xe9-\xff";  // Latin-1 e-acute and a byte never in UTF-8
  std::vector<Case> cases;
  const auto ok = [](std::string name, std::function<Args(const fs::path&)> setup,
                     std::function<void(const fs::path&, const Result&)> check) {
    return Case{std::move(name), std::move(setup), Expect{0, {}, 0}, std::move(check)};
  };
  const auto no_runs_folder = [](const fs::path& d, const Result& r) {
    CHECK(r.err.empty());
    CHECK(!fs::exists(d / "runs"));  // nothing created by a run that never started
  };
  cases.push_back(ok(
      "--print-topology creates no run folder",
      [](auto&) {
        return no_run_dir({"--print-topology", "--spheres", "13"});
      },
      no_runs_folder));
  cases.push_back(ok(
      "a subnormal learning rate (1e-320) is a number",
      [](auto&) {
        return no_run_dir({"--lr", "1e-320", "--print-topology"});
      },
      no_runs_folder));
  cases.push_back(ok(
      "--threads at its maximum (8 per core) trains",
      [](const fs::path& d) {
        const int cores = cllm::detected_cores();
        return in_run(d, {"--threads", std::to_string(8 * cores), "--sample-tokens", "0"});
      },
      [](const fs::path&, const Result& r) { CHECK(r.err.empty()); }));
  cases.push_back(ok(
      "a corpus path that is not UTF-8: trained, recorded as bytes, resumed",
      [=](const fs::path& d) {
        fs::create_directory(d / bad_utf8);
        write_file(d / bad_utf8 / "text.txt", english_corpus());
        return quick_train((d / "run").string(), (d / bad_utf8 / "text.txt").string());
      },
      [=](const fs::path& d, const Result& r) {
        CHECK(r.err.empty());
        const json c = read_json(d / "run" / "config.json");
        CHECK(c["settings"]["corpus"].contains("bytes_hex"));
        // --resume finds the corpus again from those bytes (and its data hash matches).
        const Result again = run_in(d, resume_run(d / "run"));
        INFO("resume: " << again.out << again.err);
        CHECK(again.code == 0);
        CHECK(contains(again.out, "already complete"));
      }));
  cases.push_back(ok(
      "--resume needs neither config.json nor a readable one: the checkpoint holds the settings",
      [](const fs::path& d) {
        const auto run = copy_run(d);
        write_file(run / "config.json", "{ not json");
        return resume_run(run);
      },
      [](const fs::path&, const Result& r) { CHECK(contains(r.out, "already complete")); }));
  cases.push_back(ok(
      "a run folder whose name is not UTF-8 and has a line break",
      [=](const fs::path& d) { return quick_train((d / (bad_utf8 + "\nrun")).string()); },
      [=](const fs::path& d, const Result& r) {
        CHECK(r.err.empty());
        const fs::path run = d / (bad_utf8 + "\nrun");
        const json s = read_json(run / "summary.json");
        CHECK(s["checkpoint"].contains("bytes_hex"));
        CHECK(fs::exists(run / "checkpoints" / ckpt_name(6)));
        CHECK(!fs::exists(run / "config.json.tmp"));
      }));
  cases.push_back(ok(
      "a config file with a byte-order mark, CRLF lines, quotes and trailing comments",
      [](const fs::path& d) {
        write_file(d / "run.cfg",
                   "\xEF\xBB\xBF# settings\r\nsteps = 5   # five\r\n[train]\r\n"
                   "prompt = \"a # b\"\r\nseed = 7\t# tab comment\r\n");
        return Args{"train",
                    "--config",
                    (d / "run.cfg").string(),
                    "--corpus",
                    corpus_file(),
                    "--model",
                    "tiny",
                    "--context",
                    "32",
                    "--batch",
                    "8",
                    "--run-dir",
                    (d / "run").string(),
                    "--sample-tokens",
                    "3"};
      },
      [](const fs::path& d, const Result& r) {
        CHECK(r.err.empty());
        const json c = read_json(d / "run" / "config.json");
        CHECK(c["settings"]["steps"] == 5);
        CHECK(c["settings"]["seed"] == 7);
        CHECK(read_file(d / "run" / "sample.txt").rfind("a # b", 0) == 0);
      }));
  cases.push_back(ok(
      "a corpus folder with a 100 GB sparse image: skipped as binary, unread",
      [](const fs::path& d) {
        fs::create_directory(d / "c");
        write_file(d / "c" / "text.txt", english_corpus());
        sparse_file(d / "c" / "disk.img", uintmax_t(100) << 30);
        return quick_train((d / "run").string(), (d / "c").string());
      },
      [](const fs::path&, const Result& r) {
        CHECK(r.err.empty());
        CHECK(contains(r.out, "1 binary skipped"));
      }));
  cases.push_back(ok(
      "--resume past a newest checkpoint whose header number is out of range",
      [](const fs::path& d) {
        const auto run = copy_run(d);
        header_number_out_of_range(ckpt(run, 6));
        return resume_run(run, {"--sample-tokens", "0"});
      },
      [](const fs::path& d, const Result& r) {
        CHECK(contains(r.err, "out of range; using the previous checkpoint"));
        CHECK(contains(r.out + r.err, "resuming from " + ckpt(d / "run", 3).string()));
        // The run wrote a good step-6 checkpoint over the broken one.
        const Result s =
            run_in(d, {"sample", "--checkpoint", ckpt(d / "run", 6).string(), "--tokens", "1"});
        CHECK(s.code == 0);
      }));
  cases.push_back(ok(
      "--resume keeps a run's --sample-tokens 0 (it was forgotten: a sample was written)",
      [](const fs::path& d) {
        const Result r = run_in(d, in_run(d, {"--sample-tokens", "0", "--checkpoint-every", "3"}));
        if (r.code != 0) throw std::runtime_error("the case's run failed: " + r.err);
        fs::remove(ckpt(d / "run", 6));
        return resume_run(d / "run");
      },
      [](const fs::path& d, const Result& r) {
        CHECK(r.code == 0);
        CHECK(!fs::exists(d / "run" / "sample.txt"));
        CHECK(!contains(r.out, "--- sample"));
      }));
  cases.push_back(ok(
      "--resume of a finished run changes nothing",
      [](const fs::path& d) {
        return Args{"train", "--run-dir", copy_run(d).string(), "--resume", "--progress", "plain"};
      },
      [](const fs::path& d, const Result& r) {
        CHECK(contains(r.out, "already complete"));
        CHECK(changes(take_snapshot(finished_run()), take_snapshot(d / "run")).empty());
      }));
  finished_run();
  const auto outcomes = run_all(cases);
  check_outcomes(cases, outcomes);
}

// The data-loss cases of issue 13 (tests/e2e/test_data_safety.cpp has the fuller versions and
// the million-sphere chain, which runs alone).
TEST_CASE("battery: data-loss cases of issue 13", "[e2e][battery]") {
  std::vector<Case> cases;
  // Pruning must never delete the last good checkpoints because a damaged file sorts after them.
  cases.push_back(Case{"a damaged checkpoint that sorts last does not get the good ones pruned",
                       [](const fs::path& d) {
                         const auto run = copy_run(d);
                         fs::remove(ckpt(run, 6));  // resumes from step 3 and writes step 6 again
                         write_file(ckpt(run, 999), "damaged");
                         return resume_run(run, {"--keep", "1"});
                       },
                       Expect{0, {}, 0},
                       [](const fs::path& d, const Result& r) {
                         INFO(r.out << r.err);
                         CHECK(fs::exists(ckpt(d / "run", 6)));
                         const Result again = run_in(d, resume_run(d / "run"));
                         CHECK(again.code == 0);
                         CHECK(contains(again.out, "already complete"));
                       }});
  // A folder with a previous run's results but no checkpoints is not silently overwritten.
  cases.push_back(bad("a new run into a folder with a previous run's results",
                      [](const fs::path& d) {
                        const auto run = copy_run(d);
                        fs::remove_all(run / "checkpoints");
                        return in_run(d);
                      },
                      {"run"}));
  finished_run();
  const auto outcomes = run_all(cases);
  check_outcomes(cases, outcomes);
}

// Finding (issue 19): `cllm serve` on a run whose metrics.jsonl became a FIFO ignored two SIGINTs:
// a request thread blocked opening the FIFO, and stopping waited for it. The request is now
// answered (the FIFO is a notice, never opened for a blocking read) and one SIGINT ends serve.
TEST_CASE("battery: serve stops on the first Ctrl-C while a request reads the run",
          "[e2e][battery]") {
  TempDir tmp;
  const fs::path run = copy_run(tmp.path);
  Background serve({"serve", run.string(), "--port", "0"});
  int port = 0;
  REQUIRE(serve.wait_until([&] {
    const std::string out = serve.out_so_far();
    const auto at = out.find("http://127.0.0.1:");
    if (at == std::string::npos) return false;
    port = std::atoi(out.c_str() + at + 17);
    return port > 0;
  }));
  fs::remove(run / "metrics.jsonl");
  REQUIRE(::mkfifo((run / "metrics.jsonl").c_str(), 0644) == 0);

  // One request, by hand (the e2e tests have no HTTP client): it must be answered.
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(s >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  const timeval limit{30, 0};  // only a guard against a hang
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  const std::string req = "GET /api/run HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  REQUIRE(::send(s, req.data(), req.size(), 0) == ssize_t(req.size()));
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::recv(s, buf, sizeof buf, 0)) > 0;) answer.append(buf, size_t(n));
  ::close(s);
  CHECK(answer.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(contains(answer, "FIFO"));  // the page says why it shows no rows

  serve.signal(SIGINT);
  const Result r = serve.wait(60);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.code == 0);
}
