#pragma once
// Helpers shared by the benchmark programs: the command line (run/options.hpp), timing,
// statistics over step times, the deterministic synthetic token stream, output files and main().
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "run/options.hpp"
#include "src/clock.hpp"
#include "src/config.hpp"
#include "src/rng.hpp"
#include "src/stats.hpp"

namespace cllm::bench {

// --- Command line -------------------------------------------------------------------------------

// Integer options accept [lo, kIntLimit]; lo defaults to -kIntLimit (validated elsewhere).
constexpr long long kIntLimit = 1000000000LL;

// Declares an integer option writing `dst`; its current value is the default shown in --help.
inline void add_int(cli::OptionTable& t, const std::string& name, const std::string& help, int& dst,
                    long long lo = -kIntLimit) {
  t.add(name, "N", help, std::to_string(dst),
        [name, &dst, lo](const std::string& v) { dst = int(cli::to_int(name, v, lo, kIntLimit)); });
}

// The items of a comma-separated list, empty ones dropped ("a,,b" -> a, b).
// The CPU's model name, as /proc/cpuinfo gives it (every figure names its CPU).
inline std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  for (auto& item : cli::split(s, ','))
    if (!item.empty()) out.push_back(std::move(item));
  return out;
}

// Adds --help, parses argv and rejects positional arguments. With --help (or -h) prints `usage`,
// then the option table, and exits 0. Throws cli::UsageError.
inline void parse_options(cli::OptionTable& t, int argc, char** argv, const char* usage) {
  bool help = false;
  t.add("--help,-h", "", "show this help", "", [&help](const std::string&) { help = true; });
  t.parse(std::vector<std::string>(argv + 1, argv + argc));
  if (help) {
    std::fputs(usage, stdout);
    std::fputs(("\noptions:\n" + t.help()).c_str(), stdout);
    std::exit(0);
  }
  if (!t.positionals.empty())
    throw cli::UsageError(fmt::format("unexpected argument '{}'", t.positionals[0]));
}

// Runs `body` and turns exceptions into a one-line message on stderr: exit status 2 for a bad
// command line or configuration, 1 for anything else.
template <class Body>
int bench_main(const char* program, Body&& body) {
  try {
    return body();
  } catch (const cli::UsageError& e) {
    fmt::print(stderr, "{}: error: {}\n", program, e.what());
    return 2;
  } catch (const ConfigError& e) {
    fmt::print(stderr, "{}: error: {}\n", program, e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", program, e.what());
    return 1;
  }
}

// --- Timing and statistics ----------------------------------------------------------------------

using Clock = SteadyClock;  // ms_between and ms_since: src/clock.hpp

// --- Data ---------------------------------------------------------------------------------------

// The synthetic corpus: pseudo-random bytes from a fixed seed (folded into the vocabulary), so
// no corpus file is needed and every run computes the same numbers.
constexpr uint64_t kStreamSeed = 0x5eed5eedULL;
constexpr size_t kStreamTokens = size_t(1) << 20;

inline std::vector<int32_t> synthetic_stream(int vocab) {
  std::vector<int32_t> stream(kStreamTokens);
  for (size_t i = 0; i < stream.size(); ++i)
    stream[i] = int32_t((hash_words(kStreamSeed, i) & 0xff) % uint64_t(vocab));
  return stream;
}

// --- Output -------------------------------------------------------------------------------------

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) throw std::runtime_error(fmt::format("cannot write {}", path));
}
inline void write_json(const std::string& path, const nlohmann::json& j) {
  write_text(path, j.dump(2) + "\n");
}

}  // namespace cllm::bench
