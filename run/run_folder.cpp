#include "run/run_folder.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <ostream>
#include <sstream>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "run/run_data.hpp"
#include "src/config.hpp"
#include "src/regular_file.hpp"
#include "src/sha256.hpp"

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

// The files an earlier run left in dir.
std::vector<fs::path> previous_run_files(const fs::path& dir) {
  std::error_code ec;
  std::vector<fs::path> previous;
  for (const char* name : kRunFiles)
    if (fs::exists(dir / name, ec)) previous.push_back(dir / name);
  for (const auto& p : list_checkpoints((dir / "checkpoints").string())) previous.push_back(p);
  return previous;
}

// A new run never silently replaces what an earlier run left here.
void refuse_previous_run(const fs::path& dir, const std::vector<fs::path>& previous) {
  if (!previous.empty())
    throw ConfigError(fmt::format(
        "run folder '{}' holds a previous run ({}{}); continue it with --resume, choose another "
        "--run-dir, or pass --overwrite to replace it",
        dir.string(), previous.front().filename().string(),
        previous.size() > 1 ? fmt::format(" and {} more", previous.size() - 1) : ""));
}

void clear_previous_run(const fs::path& dir, bool overwrite) {
  const std::vector<fs::path> previous = previous_run_files(dir);
  if (!overwrite) refuse_previous_run(dir, previous);
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

namespace {

bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// Whether `file` (an existing path, links followed) is one of a run folder's own files.
bool is_run_file(const fs::path& file) {
  std::error_code ec;
  const fs::path real = fs::canonical(file, ec);
  if (ec) return false;
  const std::string name = real.filename().string();
  const fs::path folder = real.parent_path();
  if (folder.filename() == "checkpoints" && name.rfind("ckpt-", 0) == 0) return true;
  const bool run_name = name == ".lock" || std::find(std::begin(kRunFiles), std::end(kRunFiles),
                                                     name) != std::end(kRunFiles);
  return run_name &&
         (fs::exists(folder / "config.json", ec) || fs::exists(folder / "metrics.jsonl", ec) ||
          fs::is_directory(folder / "checkpoints", ec));
}

}  // namespace

void refuse_output_over_inputs(const std::string& out, const std::vector<std::string>& inputs,
                               const std::string& option) {
  const std::string target = resolve_output_path(out);
  struct stat o {};
  const bool exists = ::stat(target.c_str(), &o) == 0;
  // Where the output would land: its folder, resolved (the file itself may not exist yet).
  std::error_code ec;
  const fs::path out_dir = fs::weakly_canonical(fs::absolute(target, ec).parent_path(), ec);
  for (const auto& in : inputs) {
    struct stat i {};
    if (::stat(in.c_str(), &i) != 0) continue;
    if (exists && same_file(o, i))
      throw ConfigError(
          fmt::format("{} '{}' is the same file as the input '{}'; it would be "
                      "replaced; choose another {}",
                      option, out, in, option));
    if (S_ISDIR(i.st_mode)) {
      const fs::path in_dir = fs::canonical(in, ec);
      if (ec) continue;
      const auto rel = out_dir.lexically_relative(in_dir);
      if (!rel.empty() && *rel.begin() != "..")
        throw ConfigError(
            fmt::format("{} '{}' is inside the input folder '{}', which would then "
                        "hold it; choose a path outside it",
                        option, out, in));
    }
  }
  if (exists && is_run_file(target))
    throw ConfigError(
        fmt::format("{} '{}' is a file of a run folder; it belongs to that run and "
                    "is not replaced; choose another {}",
                    option, out, option));
}

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

void RunFolder::check_new(const std::string& dir, bool overwrite) {
  if (dir.empty()) return;  // a new runs/<date-time>
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (st.type() == fs::file_type::not_found) return;
  if (!fs::is_directory(st))
    throw ConfigError(fmt::format("cannot create the run folder '{}': not a folder", dir));
  if (!overwrite) refuse_previous_run(dir, previous_run_files(dir));
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
  std::vector<std::string> skipped;  // why each newer one was passed over
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      Checkpoint ck = load_checkpoint(*it);
      // Left in place, untouched: they may be unreadable for a passing reason (permissions, I/O,
      // a newer format), and a later checkpoint of this run will replace them by name.
      for (const auto& why : skipped) err << "cllm: " << why << "; using the previous checkpoint\n";
      return ck;
    } catch (const CheckpointError& e) {
      skipped.push_back(e.what());
    }
  }
  // One line: the newest one's reason, and how many others failed too.
  throw CheckpointError(
      fmt::format("--resume: no usable checkpoint in '{}': {}{}", ckdir, skipped.front(),
                  skipped.size() > 1
                      ? fmt::format(" (and the {} older ones are unusable too)", skipped.size() - 1)
                      : ""));
}

nlohmann::json tokenizer_record(const std::string& kind, const std::string& data) {
  return {{"kind", kind}, {"sha256", sha256_hex(data.data(), data.size())}};
}

void check_checkpoint_of_run(const Checkpoint& ck, const nlohmann::json& config) {
  using nlohmann::json;
  std::vector<std::string> diffs;
  if (uint64_t named = 0; (named = checkpoint_step(ck.source_path)) != ck.step)
    diffs.push_back(fmt::format("its name says step {} but it holds step {}", named, ck.step));
  const json run = config.is_object() ? config.value("run", json()) : json();
  const auto differs = [&](const std::string& what, const json& recorded, const json& found) {
    if (!recorded.is_null() && recorded != found)
      diffs.push_back(fmt::format("{} {} (checkpoint) vs {} (config.json)", what, found.dump(),
                                  recorded.dump()));
  };
  if (run.is_object()) {
    const json model = run.value("model", json());
    if (model.is_object()) {
      differs("vocab", model.value("vocab", json()), ck.model.vocab);
      differs("d_model", model.value("d_model", json()), ck.model.d_model);
      differs("layers", model.value(layers_key(model), json()), ck.model.layers);
      differs("n_heads", model.value("n_heads", json()), ck.model.n_heads);
      differs("context", model.value("context", json()), ck.model.context);
    }
    differs("seed", run.value("seed", json()), ck.seed);
    differs("data_sha256", run.value("data_sha256", json()),
            ck.run.is_object() ? ck.run.value("data_sha256", json()) : json());
  }
  const json tok = config.is_object() ? config.value("tokenizer", json()) : json();
  if (tok.is_object()) {
    const json mine = tokenizer_record(ck.tokenizer_kind, ck.tokenizer_data);
    differs("tokenizer", tok.value("kind", json()), mine["kind"]);
    if (tok.value("kind", json()) == mine["kind"])
      differs("tokenizer sha256", tok.value("sha256", json()), mine["sha256"]);
  }
  if (diffs.empty()) return;
  std::string list;
  for (const auto& d : diffs) list += (list.empty() ? "" : ", ") + d;
  throw CheckpointError(fmt::format(
      "--resume: checkpoint '{}' is not this run's ({}); nothing was changed; move it out of "
      "checkpoints/ to resume from the run's own",
      ck.source_path, list));
}

Checkpoint RunFolder::checkpoint_to_resume(std::ostream& err) const {
  // A FIFO or device in place of metrics.jsonl or config.json would block the run once its
  // folder is being written: refused now.
  if (const std::string why = run::unreadable_run_file(dir_); !why.empty())
    throw CheckpointError("--resume: " + why);
  Checkpoint ck = newest_valid_checkpoint(err);
  check_checkpoint_of_run(ck, read_json("config.json"));
  return ck;
}

nlohmann::json RunFolder::read_json(const std::string& name) const {
  std::string text, why;
  const RegularFile f = RegularFile::open(path(name), run::kMaxRunJsonBytes, name, why);
  if (!f.is_open() || !f.read_all(text, why)) return nlohmann::json::object();
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

void RunFolder::write(const std::string& name, const std::string& text) const {
  write_file_atomic(path(name), text);
}

AppendFile RunFolder::open_metrics(int64_t done) const {
  const std::string p = path("metrics.jsonl");
  if (done <= 0) return AppendFile(p, /*truncate=*/true);
  // The rows so far, of a regular file (a FIFO here would block the run before step 1).
  std::string text, why, keep, line;
  std::error_code ec;
  if (fs::symlink_status(p, ec).type() != fs::file_type::not_found) {
    const RegularFile f = open_regular_file<FileError>(p, run::kMaxMetricsBytes, "metrics.jsonl");
    if (!f.read_all(text, why)) throw FileError(why);
  }
  std::istringstream in(text);
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
