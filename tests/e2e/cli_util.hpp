#pragma once
// Helpers for the end-to-end tests: run the cllm binary as a user would (always under a time
// limit), temporary folders, a small deterministic English-like corpus, run-folder readers.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "../temp_dir.hpp"  // tests/temp_dir.hpp

#ifndef CLLM_BIN
#error "CLLM_BIN (path of the cllm binary) must be defined by the build"
#endif

namespace e2e {

namespace fs = std::filesystem;
using Args = std::vector<std::string>;
using json = nlohmann::json;

inline const std::string& cllm_bin() {
  static const std::string bin = CLLM_BIN;
  return bin;
}

// ---------------------------------------------------------------------------------------------
// Files and folders

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

using cllm::test::TempDir;  // tests/temp_dir.hpp

// Deterministic English-like text of about `bytes` bytes: sentences of common words, commas,
// capitals, line breaks and paragraphs. The same (bytes, seed) always gives the same text.
inline std::string english_corpus(size_t bytes = 48 * 1024, uint64_t seed = 42) {
  static const char* const kWords[] = {
      "the",   "and",   "of",    "to",    "in",     "that",   "it",    "was",   "he",    "she",
      "they",  "we",    "you",   "is",    "for",    "on",     "with",  "as",    "his",   "her",
      "at",    "by",    "from",  "this",  "had",    "not",    "but",   "be",    "are",   "or",
      "have",  "one",   "all",   "were",  "there",  "when",   "which", "their", "said",  "so",
      "if",    "out",   "up",    "them",  "would",  "into",   "who",   "about", "king",  "land",
      "house", "water", "light", "day",   "night",  "man",    "woman", "city",  "river", "hill",
      "tree",  "bread", "word",  "heart", "hand",   "people", "child", "field", "stone", "fire",
      "wind",  "road",  "came",  "went",  "saw",    "took",   "gave",  "made",  "spoke", "found",
      "kept",  "old",   "new",   "great", "little", "good",   "long",  "dark",  "quiet", "early"};
  constexpr size_t kNumWords = sizeof(kWords) / sizeof(kWords[0]);
  uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
  auto next = [&s](uint64_t n) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;  // xorshift64
    return s % n;
  };
  std::string out;
  out.reserve(bytes + 128);
  size_t line = 0;
  while (out.size() < bytes) {
    const size_t n = 4 + next(12);
    for (size_t i = 0; i < n; ++i) {
      std::string w = kWords[next(kNumWords)];
      if (i == 0) w[0] = char(w[0] - 'a' + 'A');
      const std::string sep = i == 0 ? "" : (next(9) == 0 ? ", " : " ");
      if (line + sep.size() + w.size() > 72) {
        out += "\n";
        line = 0;
        out += w;
        line += w.size();
      } else {
        out += sep + w;
        line += sep.size() + w.size();
      }
    }
    out += next(6) == 0 ? "?" : ".";
    if (next(7) == 0) {
      out += "\n\n";
      line = 0;
    } else {
      out += " ";
      line += 2;
    }
  }
  out += "\n";
  return out;
}

// The shared corpus file of this test process (written once).
inline std::string corpus_file() {
  static TempDir dir;
  static const std::string path = [] {
    const std::string p = dir / "corpus.txt";
    write_file(p, english_corpus());
    return p;
  }();
  return path;
}

inline std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == '\n') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

inline bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

inline size_t count_newlines(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return 0;
  size_t n = 0;
  char buf[8192];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    for (std::streamsize i = 0; i < in.gcount(); ++i) n += buf[i] == '\n';
    if (!in) break;
  }
  return n;
}

inline json read_json(const fs::path& p) {
  return json::parse(read_file(p));
}

// metrics.jsonl, one parsed row per line.
inline std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> rows;
  for (const auto& line : split_lines(read_file(p)))
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

// Names (not paths) of the files in dir that are real checkpoints, ckpt-<8+ digits>.safetensors,
// sorted (the zero-padded names sort by step).
inline std::vector<std::string> checkpoint_files(const fs::path& dir) {
  static const std::regex re(R"(ckpt-[0-9]{8,}\.safetensors)");
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && std::regex_match(e.path().filename().string(), re))
      names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// "ckpt-00000042.safetensors"
inline std::string ckpt_name(int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "ckpt-%08lld.safetensors", static_cast<long long>(step));
  return buf;
}

// Every regular file under dir (relative path -> bytes), to show that nothing was touched.
inline std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = read_file(e.path());
  return files;
}

// ---------------------------------------------------------------------------------------------
// Running the binary

struct Result {
  int code = -1;  // exit status, or 128 + signal
  std::string out, err;
  std::vector<std::string> err_lines() const { return split_lines(err); }
  std::string last_out_line() const {
    const auto l = split_lines(out);
    return l.empty() ? std::string() : l.back();
  }
};

inline std::string describe(const Args& args) {
  std::string s = "cllm";
  for (const auto& a : args) s += " " + a;
  return s;
}

inline int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

namespace detail {
// In the child after fork: stdin from /dev/null, stdout and stderr to the given files.
[[noreturn]] inline void exec_child(const std::vector<std::string>& argv, const std::string& out,
                                    const std::string& err, bool die_with_parent) {
  if (die_with_parent) ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  const int in = ::open("/dev/null", O_RDONLY);
  const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (in < 0 || o < 0 || e < 0) ::_exit(126);
  ::dup2(in, 0), ::dup2(o, 1), ::dup2(e, 2);
  ::close(in), ::close(o), ::close(e);
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  ::execvp(cargv[0], cargv.data());
  ::_exit(127);
}

inline std::string scratch_name(const char* what) {
  static TempDir dir;
  static std::atomic<int> counter{0};  // thread-safe: the battery runs cases in parallel
  return dir / (std::to_string(++counter) + "." + what);
}
}  // namespace detail

// Runs `cllm args...` under `timeout -s KILL timeout_s`, waits, returns the exit status and the
// whole of stdout and stderr. A hang shows up as code 137.
// With `cwd`, the process runs in that folder.
inline Result run_cli(const Args& args, int timeout_s = 60, const std::string& cwd = "") {
  std::vector<std::string> argv = {"timeout", "-s", "KILL", std::to_string(timeout_s), cllm_bin()};
  if (!cwd.empty()) argv.insert(argv.begin(), {"env", "-C", cwd});
  argv.insert(argv.end(), args.begin(), args.end());
  const std::string out = detail::scratch_name("out"), err = detail::scratch_name("err");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) detail::exec_child(argv, out, err, true);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  Result r;
  r.code = decode_status(status);
  r.out = read_file(out);
  r.err = read_file(err);
  fs::remove(out), fs::remove(err);
  return r;
}

// As run_cli, on a "full disk": no file can grow past max_file_bytes (RLIMIT_FSIZE with SIGXFSZ
// ignored, so every write beyond it fails with EFBIG, as writes fail with ENOSPC). Output comes
// back through pipes, which the limit does not apply to.
inline Result run_cli_full_disk(const Args& args, long long max_file_bytes = 0,
                                int timeout_s = 60) {
  std::vector<std::string> argv = {"timeout", "-s", "KILL", std::to_string(timeout_s), cllm_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  int out_pipe[2], err_pipe[2];
  if (::pipe(out_pipe) != 0 || ::pipe(err_pipe) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int in = ::open("/dev/null", O_RDONLY);
    ::dup2(in, 0), ::dup2(out_pipe[1], 1), ::dup2(err_pipe[1], 2);
    ::close(in), ::close(out_pipe[0]), ::close(err_pipe[0]);
    ::close(out_pipe[1]), ::close(err_pipe[1]);
    ::signal(SIGXFSZ, SIG_IGN);  // an ignored signal stays ignored across exec
    const rlimit lim{rlim_t(max_file_bytes), rlim_t(max_file_bytes)};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(125);
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    ::execvp(cargv[0], cargv.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]), ::close(err_pipe[1]);
  Result r;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* dst[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0) {  // bounded: `timeout` ends the child, which closes both pipes
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        dst[i]->append(buf, size_t(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.code = decode_status(status);
  return r;
}

// A `cllm` run in the background that the test can signal (SIGKILL, SIGINT, SIGTERM). It runs
// the binary directly (so that a signal reaches cllm itself and nothing else) under our own
// watchdog: wait() kills it with SIGKILL past its limit, and so does the destructor.
class Background {
 public:
  explicit Background(const Args& args) {
    out_ = detail::scratch_name("bg.out"), err_ = detail::scratch_name("bg.err");
    std::vector<std::string> argv = {cllm_bin()};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) detail::exec_child(argv, out_, err_, true);
  }
  ~Background() {
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
    std::error_code ec;
    fs::remove(out_, ec), fs::remove(err_, ec);
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  bool running() {
    if (reaped_) return false;
    int status = 0;
    const pid_t p = ::waitpid(pid_, &status, WNOHANG);
    if (p == pid_) {
      reaped_ = true;
      code_ = decode_status(status);
      return false;
    }
    return true;
  }

  void signal(int sig) {
    if (!reaped_) ::kill(pid_, sig);
  }

  // What it has written so far ("" before the child opened its files).
  std::string out_so_far() const { return fs::exists(out_) ? read_file(out_) : std::string(); }
  std::string err_so_far() const { return fs::exists(err_) ? read_file(err_) : std::string(); }
  pid_t pid() const { return pid_; }

  // Waits until `ready()` is true; false when the process ended first or after limit_s.
  template <class Pred>
  bool wait_until(Pred ready, double limit_s = 60) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_s);
    while (std::chrono::steady_clock::now() < end) {
      if (ready()) return true;
      if (!running()) return ready();
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    return false;
  }

  // Waits for the end (SIGKILL past limit_s, then code 137) and returns the outcome.
  Result wait(double limit_s = 60) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_s);
    while (running()) {
      if (std::chrono::steady_clock::now() >= end) {
        ::kill(pid_, SIGKILL);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        reaped_ = true;
        code_ = decode_status(status);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    Result r;
    r.code = code_;
    r.out = read_file(out_);
    r.err = read_file(err_);
    return r;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int code_ = -1;
  std::string out_, err_;
};

// ---------------------------------------------------------------------------------------------
// Common settings and readers

// The quick settings of most tests (about a second or less per run).
inline Args quick_train(const std::string& run_dir, const std::string& corpus = corpus_file()) {
  return {"train", "--corpus",   corpus, "--run-dir",    run_dir, "--model",
          "tiny",  "--context",  "32",   "--batch",      "8",     "--micro-batch",
          "2",     "--steps",    "6",    "--eval-every", "3",     "--sample-tokens",
          "20",    "--progress", "plain"};
}

inline Args operator+(Args a, const Args& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The hash of `weights sha256 <64 hex>` when that is the last stdout line, else "".
inline std::string printed_hash(const Result& r) {
  static const std::regex re(R"(weights sha256 ([0-9a-f]{64}))");
  std::smatch m;
  const std::string last = r.last_out_line();
  if (std::regex_match(last, m, re)) return m[1].str();
  return "";
}

}  // namespace e2e
