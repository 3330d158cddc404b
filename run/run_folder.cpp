#include "run/run_folder.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "src/config.hpp"

namespace cllm {

namespace fs = std::filesystem;

namespace {

// The files a run writes into its folder (checkpoints/ aside).
const char* const kRunFiles[] = {"config.json", "metrics.jsonl", "summary.json", "spheres.json",
                                 "sample.txt"};

// A new runs/<date-time> folder, created here (atomically: two runs started in the same second
// get different folders).
std::string new_stamped_dir() {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  std::error_code ec;
  fs::create_directories("runs", ec);
  for (int i = 1; i < 10000; ++i) {
    const std::string dir =
        std::string("runs/") + stamp + (i > 1 ? "-" + std::to_string(i) : std::string());
    if (fs::create_directory(dir, ec)) return dir;
    if (ec) break;
  }
  throw ConfigError(fmt::format("cannot create a run folder under 'runs/': {}",
                                ec ? ec.message() : "too many runs this second"));
}

// An exclusive lock on dir/.lock; returns its descriptor. ConfigError when another process holds
// it.
int lock_folder(const fs::path& dir) {
  const std::string path = (dir / ".lock").string();
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (fd < 0) throw ConfigError(fmt::format("cannot create '{}': {}", path, std::strerror(errno)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    throw ConfigError(
        fmt::format("run folder '{}' is in use by another cllm process", dir.string()));
  }
  return fd;
}

// Temporaries of a killed checkpoint write.
void remove_stale_temporaries(const fs::path& ckdir) {
  std::error_code ec;
  for (fs::directory_iterator it(ckdir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("ckpt-", 0) == 0 && name.find(".safetensors.tmp.") != std::string::npos) {
      std::error_code rm;
      fs::remove(it->path(), rm);
    }
  }
}

// A new run never silently replaces what an earlier run left here.
void clear_previous_run(const fs::path& dir, bool overwrite) {
  std::error_code ec;
  std::vector<fs::path> previous;
  for (const char* name : kRunFiles)
    if (fs::exists(dir / name, ec)) previous.push_back(dir / name);
  for (const auto& p : list_checkpoints((dir / "checkpoints").string())) previous.push_back(p);
  if (previous.empty()) return;
  if (!overwrite)
    throw ConfigError(fmt::format(
        "run folder '{}' holds a previous run ({}{}); continue it with --resume, choose another "
        "--run-dir, or pass --overwrite to replace it",
        dir.string(), previous.front().filename().string(),
        previous.size() > 1 ? fmt::format(" and {} more", previous.size() - 1) : ""));
  for (const auto& p : previous) {
    std::error_code rm;
    if (!fs::remove(p, rm) && rm)
      throw ConfigError(
          fmt::format("--overwrite: cannot remove '{}': {}", p.string(), rm.message()));
  }
}

void make_folder(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw ConfigError(fmt::format("cannot create the run folder '{}': {}", dir.string(),
                                  ec ? ec.message() : "not a folder"));
}

}  // namespace

RunFolder::RunFolder(std::string dir, int lock_fd) : dir_(std::move(dir)), lock_fd_(lock_fd) {}

RunFolder::~RunFolder() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

RunFolder::RunFolder(RunFolder&& o) noexcept
    : dir_(std::move(o.dir_)), lock_fd_(std::exchange(o.lock_fd_, -1)) {}

RunFolder RunFolder::create(const std::string& dir_arg, bool overwrite) {
  const std::string dir = dir_arg.empty() ? new_stamped_dir() : dir_arg;
  make_folder(dir);
  RunFolder f(dir, lock_folder(dir));
  clear_previous_run(dir, overwrite);
  make_folder(fs::path(dir) / "checkpoints");
  remove_stale_temporaries(fs::path(dir) / "checkpoints");
  return f;
}

RunFolder RunFolder::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw CheckpointError(fmt::format("--resume: there is no run folder '{}'", dir));
  if (!fs::is_directory(fs::path(dir) / "checkpoints", ec))
    throw CheckpointError(
        fmt::format("--resume: '{}' holds no checkpoints folder; nothing to resume", dir));
  RunFolder f(dir, lock_folder(dir));
  remove_stale_temporaries(fs::path(dir) / "checkpoints");
  return f;
}

std::string RunFolder::path(const std::string& name) const {
  return (fs::path(dir_) / name).string();
}

std::string RunFolder::checkpoint_path(int64_t step) const {
  return (fs::path(dir_) / "checkpoints" / checkpoint_name(uint64_t(step))).string();
}

Checkpoint RunFolder::newest_valid_checkpoint(std::ostream& err) const {
  const std::string ckdir = path("checkpoints");
  const auto all = list_checkpoints(ckdir);
  if (all.empty()) throw CheckpointError(fmt::format("--resume: no checkpoint in '{}'", ckdir));
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      return load_checkpoint(*it);
    } catch (const CheckpointError& e) {
      // Left in place, untouched: it may be unreadable for a passing reason (permissions, I/O,
      // a newer format), and a later checkpoint of this run will replace it by name.
      err << "cllm: " << e.what()
          << (std::next(it) != all.rend() ? "; using the previous checkpoint\n"
                                          : "; no older checkpoint\n");
    }
  }
  throw CheckpointError(fmt::format("--resume: no usable checkpoint in '{}' (see above)", ckdir));
}

nlohmann::json RunFolder::read_json(const std::string& name) const {
  std::ifstream in(path(name));
  if (!in) return nlohmann::json::object();
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    return nlohmann::json::object();
  }
}

void RunFolder::write(const std::string& name, const std::string& text) const {
  write_file_atomic(path(name), text);
}

AppendFile RunFolder::open_metrics(int64_t done) const {
  const std::string p = path("metrics.jsonl");
  if (done <= 0) return AppendFile(p, /*truncate=*/true);
  std::string keep;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) {
    try {
      if (nlohmann::json::parse(line).value("step", int64_t(0)) <= done) keep += line + "\n";
    } catch (const nlohmann::json::exception&) {
      // a torn last line of a killed run
    }
  }
  write_file_atomic(p, keep);
  return AppendFile(p, /*truncate=*/false);
}

}  // namespace cllm
