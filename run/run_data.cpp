#include "run/run_data.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "src/regular_file.hpp"
#include "src/stats.hpp"

namespace cllm::run {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double num(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return kNaN;
  return it->get<double>();
}

int32_t count(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return 0;
  const double v = it->get<double>();
  return v > 0 && v < 2e9 ? int32_t(v) : 0;
}

// A number for the page: NaN and infinities become null.
json jnum(double x) {
  return std::isfinite(x) ? json(round6(x)) : json();
}

int64_t mtime_ns(const struct stat& st) {
  return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

double now_epoch_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The points of one series to draw (decimate_indices).
template <class Get>
json decimate(const std::vector<StepRow>& rows, Get get, int max_points) {
  json xs = json::array(), ys = json::array();
  size_t n = 0;
  for (size_t i = 0; i < rows.size(); ++i) n += std::isfinite(get(i));
  for (size_t i : decimate_indices(rows.size(), get, max_points)) {
    xs.push_back(rows[i].step);
    ys.push_back(round6(get(i)));
  }
  return {{"x", std::move(xs)}, {"y", std::move(ys)}, {"n", n}};
}

// Exact (step, value) of the smallest and of the last valid value.
template <class Get>
json extremes(const std::vector<StepRow>& rows, Get get) {
  size_t imin = rows.size(), ilast = rows.size();
  for (size_t i = 0; i < rows.size(); ++i) {
    const double v = get(rows[i]);
    if (!std::isfinite(v)) continue;
    if (imin == rows.size() || v < get(rows[imin])) imin = i;
    ilast = i;
  }
  auto at = [&](size_t i) {
    return i == rows.size() ? json() : json({{"step", rows[i].step}, {"value", get(rows[i])}});
  };
  return {{"min", at(imin)}, {"last", at(ilast)}};
}

}  // namespace

double round6(double x) {
  if (!std::isfinite(x) || x == 0) return x;
  const double mag = std::floor(std::log10(std::fabs(x)));
  const double scale = std::pow(10.0, 5 - mag);
  const double r = std::round(x * scale) / scale;
  return std::isfinite(r) ? r : x;
}

bool parse_row(std::string_view line, StepRow& row) {
  const json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  const auto st = j.find("step");
  if (st == j.end() || !st->is_number_integer()) return false;
  row = StepRow{};
  row.step = st->get<int64_t>();
  row.loss = num(j, "loss");
  row.lr = num(j, "lr");
  row.grad_norm = num(j, "grad_norm");
  row.tokens_per_s = num(j, "tokens_per_s");
  row.step_ms = num(j, "step_ms");
  row.compute_ms = num(j, "compute_ms");
  row.fold_ms = num(j, "fold_ms");
  row.reduce_ms = num(j, "reduce_ms");
  row.val_loss = num(j, "val_loss");
  row.val_bpb = num(j, "val_bpb");
  row.cpu_s = num(j, "cpu_s");
  row.rss_mb = num(j, "rss_mb");
  row.nodes_cpu_s = row.nodes_rss_mb = kNaN;
  if (const auto u = j.find("node_usage"); u != j.end() && u->is_array() && !u->empty()) {
    double cpu = 0, rss = 0;
    for (const json& n : *u) {
      if (!n.is_object()) continue;
      const double c = num(n, "cpu_s"), r = num(n, "rss_mb");
      if (std::isfinite(c)) cpu += c;
      if (std::isfinite(r)) rss = std::max(rss, r);
    }
    row.nodes_cpu_s = cpu, row.nodes_rss_mb = rss;
  }
  row.spheres_computing = count(j, "spheres_computing");
  // Faults handled in the step (an object, written only when there were any).
  if (const auto f = j.find("faults"); f != j.end() && f->is_object()) {
    row.restarts = count(*f, "restarts");
    row.deadline_kills = count(*f, "deadline_kills");
    row.subtree_restarts = count(*f, "subtree_restarts");
  }
  if (const auto it = j.find("resumed_from"); it != j.end() && it->is_number_integer())
    row.resumed_from = it->get<int64_t>();
  if (const auto it = j.find("checkpoint"); it != j.end() && it->is_string())
    row.checkpoint = it->get<std::string>();
  return true;
}

std::vector<std::string> run_files_read(const std::string& dir) {
  std::vector<std::string> out;
  for (const char* name :
       {"metrics.jsonl", "config.json", "summary.json", "spheres.json", "sample.txt"})
    out.push_back(dir + "/" + name);
  return out;
}

std::string unreadable_run_file(const std::string& dir) {
  for (const auto& p : run_files_read(dir)) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) continue;  // missing: a notice on the page, not an error
    const std::string name = fs::path(p).filename().string();
    const uint64_t limit = name == "metrics.jsonl" ? kMaxMetricsBytes
                           : name == "sample.txt"  ? UINT64_MAX
                                                   : kMaxRunJsonBytes;
    std::string why;
    if (RegularFile::open(p, limit, name, why).is_open()) continue;
    // An unreadable file (permissions) is a notice on the page; these would block or exhaust.
    if (!S_ISREG(st.st_mode) || uint64_t(st.st_size) > limit) return why;
  }
  return std::string();
}

RunReader::RunReader(std::string dir) : dir_(std::move(dir)) {}

void RunReader::refresh() {
  std::error_code ec;
  folder_exists_ = fs::is_directory(dir_, ec);
  if (!folder_exists_) return;  // keep what was read: the page says the folder is gone
  ever_existed_ = true;
  read_metrics();
  read_json_file("config.json", config_st_, config_);
  read_json_file("summary.json", summary_st_, summary_);
  if (read_json_file("spheres.json", spheres_st_, spheres_) || !spheres_st_.present) {
    // Shortened numbers, made once per change of the file (1,741 spheres are a lot to redo).
    spheres_view_ = nullptr;
    if (spheres_.is_array()) {
      spheres_view_ = json::array();
      for (const auto& sp : spheres_) {
        if (!sp.is_object()) continue;
        json o = json::object();
        for (auto it = sp.begin(); it != sp.end(); ++it)
          o[it.key()] = it->is_number_float() ? jnum(it->get<double>()) : *it;
        spheres_view_.push_back(std::move(o));
      }
    }
  }
  // sample.txt is text: read it whole when it changed.
  const std::string p = dir_ + "/sample.txt";
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    sample_st_ = FileState{};
    sample_.clear();
  } else if (!sample_st_.present || sample_st_.size != st.st_size ||
             sample_st_.mtime_ns != mtime_ns(st)) {
    sample_st_.present = true;
    sample_st_.size = st.st_size;
    sample_st_.mtime_ns = mtime_ns(st);
    sample_.clear();
    std::string why;  // unreadable: no sample shown
    if (const RegularFile f = RegularFile::open(p, UINT64_MAX, "sample.txt", why); f.is_open()) {
      char buf[4096];
      ssize_t got;
      while ((got = ::read(f.fd(), buf, sizeof buf)) > 0 && sample_.size() < (1u << 20))
        sample_.append(buf, size_t(got));
    }
  }
}

void RunReader::read_metrics() {
  const std::string path = dir_ + "/metrics.jsonl";
  struct stat lst {};
  if (::stat(path.c_str(), &lst) != 0 && errno == ENOENT) {
    metrics_error_.clear();
    return;
  }
  // A regular file of at most kMaxMetricsBytes: a FIFO in its place would block every reader.
  std::string why;
  const RegularFile file = RegularFile::open(path, kMaxMetricsBytes, "metrics.jsonl", why);
  if (!file.is_open()) {
    metrics_error_ = why;
    return;
  }
  const int fd = file.fd();
  metrics_error_.clear();
  metrics_seen_ = true;
  struct stat st {};
  ::fstat(fd, &st);
  metrics_mtime_ns_ = mtime_ns(st);
  // A resumed run rewrites the file (a new inode) and may drop rows past its checkpoint.
  if (st.st_dev != metrics_dev_ || st.st_ino != metrics_ino_ ||
      int64_t(st.st_size) < metrics_offset_ + metrics_tail_) {
    rows_.clear();
    metrics_dev_ = st.st_dev, metrics_ino_ = st.st_ino;
    metrics_offset_ = metrics_tail_ = metrics_bad_lines_ = metrics_first_bad_ = 0;
    metrics_lines_ = 0;
  }
  const int64_t end = int64_t(st.st_size);
  std::string buf;
  if (end > metrics_offset_) {
    buf.resize(size_t(end - metrics_offset_));
    size_t got = 0;
    while (got < buf.size()) {
      const ssize_t n = ::pread(fd, buf.data() + got, buf.size() - got, metrics_offset_ + got);
      if (n <= 0) break;
      got += size_t(n);
    }
    buf.resize(got);
  }
  size_t pos = 0;
  StepRow row;
  for (size_t nl; (nl = buf.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    const std::string_view line(buf.data() + pos, nl - pos);
    ++metrics_lines_;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    if (!parse_row(line, row)) {
      if (metrics_bad_lines_++ == 0) metrics_first_bad_ = metrics_lines_;
      continue;
    }
    // Steps only grow; a smaller one means the history was rewritten from there.
    while (!rows_.empty() && rows_.back().step >= row.step) rows_.pop_back();
    rows_.push_back(std::move(row));
  }
  metrics_offset_ += int64_t(pos);
  metrics_tail_ = int64_t(buf.size() - pos);
}

bool RunReader::read_json_file(const char* name, FileState& fst, json& out) {
  const std::string p = dir_ + "/" + name;
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    if (fst.present) out = json();
    fst = FileState{};
    return false;
  }
  if (fst.present && fst.size == st.st_size && fst.mtime_ns == mtime_ns(st)) return false;
  fst.present = true;
  fst.size = st.st_size;
  fst.mtime_ns = mtime_ns(st);
  std::string text, why;
  const RegularFile file = RegularFile::open(p, kMaxRunJsonBytes, name, why);
  if (!file.is_open() || !file.read_all(text, why)) {
    fst.error = why;
    return false;
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    fst.error = fmt::format("{} is not valid JSON ({} bytes); it is left out", name, text.size());
    return false;
  }
  fst.error.clear();
  out = std::move(j);
  return true;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
  return buf;
}

uint64_t RunReader::version() const {
  Fnv1a v;  // over the words below
  const auto mix = [&v](int64_t x) { v.mix(uint64_t(x)); };
  mix(folder_exists_), mix(metrics_seen_), mix(int64_t(metrics_ino_)), mix(metrics_offset_);
  mix(metrics_tail_), mix(metrics_bad_lines_), mix(int64_t(metrics_error_.size()));
  for (const FileState* f : {&config_st_, &summary_st_, &spheres_st_, &sample_st_})
    mix(f->present), mix(f->size), mix(f->mtime_ns), mix(int64_t(f->error.size()));
  return v.h;
}

void TimeSplit::add(const StepRow& q, int threads) {
  if (!std::isfinite(q.compute_ms)) return;
  const double fi = std::isfinite(q.fold_ms) ? q.fold_ms : 0;
  const double ri = std::isfinite(q.reduce_ms) ? q.reduce_ms : 0;
  compute += q.compute_ms, fold += fi, reduce += ri;
  if (q.spheres_computing > 0 && std::isfinite(q.step_ms)) {
    const int busy = threads > 0 ? std::min(q.spheres_computing, threads) : q.spheres_computing;
    wait += std::max(0.0, double(busy) * q.step_ms - q.compute_ms - fi - ri);
    wait_known = true;
  }
}

namespace {

// The progress line's figures: the last step, recent speed, time trained and left.
json progress_view(const std::vector<StepRow>& R, int64_t steps_total, bool running) {
  const int64_t last_step = R.empty() ? 0 : R.back().step;
  std::vector<double> tps, ms;
  for (size_t i = R.size() > 20 ? R.size() - 20 : 0; i < R.size(); ++i)
    tps.push_back(R[i].tokens_per_s), ms.push_back(R[i].step_ms);
  const double ms_med = median(ms);
  double train_ms = 0;
  for (const auto& r : R)
    if (std::isfinite(r.step_ms)) train_ms += r.step_ms;
  double last_val = kNaN;
  for (auto it = R.rbegin(); it != R.rend(); ++it)
    if (std::isfinite(it->val_loss)) {
      last_val = it->val_loss;
      break;
    }
  return {{"step", last_step},
          {"steps", steps_total > 0 ? json(steps_total) : json()},
          {"loss", jnum(R.empty() ? kNaN : R.back().loss)},
          {"val_loss", jnum(last_val)},
          {"tokens_per_s", jnum(median(tps))},
          {"train_s", round6(train_ms / 1e3)},
          {"eta_s", running && steps_total > last_step
                        ? jnum(ms_med * double(steps_total - last_step) / 1e3)
                        : json()}};
}

// Exact figures (over every row, not the drawn points).
json stats_view(const std::vector<StepRow>& R) {
  const size_t skip = std::min<size_t>(R.size() / 10 + (R.size() > 2 ? 1 : 0), 5);
  std::vector<double> tps, ms;
  int64_t restarts = 0, kills = 0, subtree = 0, ckpts = 0, resumes = 0;
  for (size_t i = 0; i < R.size(); ++i) {
    if (i >= skip) tps.push_back(R[i].tokens_per_s), ms.push_back(R[i].step_ms);
    restarts += R[i].restarts, kills += R[i].deadline_kills, subtree += R[i].subtree_restarts;
    ckpts += !R[i].checkpoint.empty();
    resumes += R[i].resumed_from >= 0;
  }
  return {{"rows", R.size()},
          {"first_step", R.empty() ? json() : json(R.front().step)},
          {"last_step", R.empty() ? json() : json(R.back().step)},
          {"loss", extremes(R, [](const StepRow& r) { return r.loss; })},
          {"val_loss", extremes(R, [](const StepRow& r) { return r.val_loss; })},
          {"val_bpb", extremes(R, [](const StepRow& r) { return r.val_bpb; })},
          {"tokens_per_s_median", jnum(median(tps))},
          {"step_ms_median", jnum(median(ms))},
          {"step_ms_p95", jnum(quantile(ms, 0.95))},
          {"restarts", restarts},
          {"deadline_kills", kills},
          {"subtree_restarts", subtree},
          {"checkpoints", ckpts},
          {"resumes", resumes}};
}

// Smoothed loss: a bias-corrected exponential moving average over every row (as TensorBoard's),
// with a span that grows with the run so that long runs look smooth too.
json smoothed_loss(const std::vector<StepRow>& R, int max_points) {
  const int span =
      int(std::clamp<size_t>(R.size() / 40, std::min<size_t>(5, R.size() / 4 + 1), 500));
  std::vector<double> smooth(R.size(), kNaN);
  const double beta = 1.0 - 1.0 / double(span);
  double acc = 0, w = 0;
  for (size_t i = 0; i < R.size(); ++i) {
    if (!std::isfinite(R[i].loss)) continue;
    acc = beta * acc + (1 - beta) * R[i].loss;
    w = beta * w + (1 - beta);
    smooth[i] = acc / w;
  }
  json s = decimate(
      R, [&smooth](size_t i) { return smooth[i]; }, max_points);
  s["span"] = span;
  return s;
}

// Where the time of a step went: compute, fold, reduce and wait (the time the computing spheres
// were not doing any of these while the step lasted: spheres computing x step time minus the
// rest), as shares, per step or summed over buckets of steps. `threads`: the scheduler's (0 =
// unknown); spheres are actors, and more of them than threads cannot all be busy at once.
json time_shares(const std::vector<StepRow>& R, int max_points, int threads) {
  json sx = json::array(), sc = json::array(), sf = json::array(), sr = json::array(),
       sw = json::array();
  bool wait_known = false;
  const size_t n = R.size();
  const size_t buckets = std::min(n, size_t(std::max(1, max_points / 2)));
  for (size_t b = 0; b < buckets; ++b) {
    const size_t lo = b * n / buckets, hi = (b + 1) * n / buckets;
    TimeSplit t;
    for (size_t i = lo; i < hi; ++i) t.add(R[i], threads);
    wait_known = wait_known || t.wait_known;
    const double total = t.total();
    if (!(total > 0)) continue;
    sx.push_back(R[hi - 1].step);
    sc.push_back(round6(t.compute / total)), sf.push_back(round6(t.fold / total));
    sr.push_back(round6(t.reduce / total)), sw.push_back(round6(t.wait / total));
  }
  return {{"x", sx},
          {"compute", sc},
          {"fold", sf},
          {"reduce", sr},
          {"wait", sw},
          {"wait_known", wait_known},
          {"per_step", n <= buckets}};
}

// The series to draw.
json series_view(const std::vector<StepRow>& R, int max_points, int threads) {
  json s;
  auto series = [&](double StepRow::*field) {
    return decimate(
        R, [&R, field](size_t i) { return R[i].*field; }, max_points);
  };
  s["loss"] = series(&StepRow::loss);
  s["loss_smooth"] = smoothed_loss(R, max_points);
  s["val_loss"] = series(&StepRow::val_loss);
  s["val_bpb"] = series(&StepRow::val_bpb);
  s["lr"] = series(&StepRow::lr);
  s["grad_norm"] = series(&StepRow::grad_norm);
  s["tokens_per_s"] = series(&StepRow::tokens_per_s);
  s["step_ms"] = series(&StepRow::step_ms);
  s["share"] = time_shares(R, max_points, threads);
  return s;
}

struct RunEvent {
  int64_t step;
  const char* kind;
  int64_t count;
  std::string detail;
};

// Too many events to list (chaos runs): merged per kind and bucket of `width` steps, counts kept.
void merge_events(std::vector<RunEvent>& ev, int64_t width) {
  std::map<std::pair<int64_t, std::string>, RunEvent> merged;
  for (auto& e : ev) {
    const auto key = std::make_pair((e.step - 1) / width, std::string(e.kind));
    auto it = merged.find(key);
    if (it == merged.end())
      merged.emplace(key, e);
    else
      it->second.count += e.count;
  }
  ev.clear();
  for (auto& [k, e] : merged) ev.push_back(e);
  std::stable_sort(ev.begin(), ev.end(),
                   [](const RunEvent& a, const RunEvent& b) { return a.step < b.step; });
}

}  // namespace

std::string RunReader::shown_dir() const {
  std::error_code ec;
  const fs::path abs = fs::absolute(dir_, ec);
  return ec ? dir_ : abs.lexically_normal().string();
}

bool RunReader::summary_done() const {
  const int64_t last_step = rows_.empty() ? 0 : rows_.back().step;
  return summary_.is_object() && summary_.contains("steps") &&
         summary_["steps"].is_number_integer() && summary_["steps"].get<int64_t>() >= last_step;
}

std::string RunReader::stop_reason() const {
  return summary_.is_object() ? summary_.value("stop_reason", std::string()) : std::string();
}

int64_t RunReader::steps_total() const {
  const json run_cfg = config_.is_object() ? config_.value("run", json()) : json();
  return run_cfg.is_object() && run_cfg.contains("steps") && run_cfg["steps"].is_number_integer()
             ? run_cfg["steps"].get<int64_t>()
             : 0;
}

int RunReader::scheduler_threads() const {
  int threads = 0;
  if (config_.is_object() && config_.contains("settings") && config_["settings"].is_object()) {
    const json& t = config_["settings"].value("threads", json());
    if (t.is_number_integer() && t.get<int64_t>() > 0) threads = int(t.get<int64_t>());
  }
  return threads;
}

json RunReader::notices_view(const std::string& shown) const {
  json notices = json::array();
  auto notice = [&](const char* level, std::string text) {
    notices.push_back({{"level", level}, {"text", std::move(text)}});
  };
  if (!folder_exists_)
    notice("error", ever_existed_
                        ? fmt::format("The run folder '{}' is gone (deleted, moved or unmounted); "
                                      "the page shows what was read before.",
                                      shown)
                        : fmt::format("There is no run folder '{}' (yet).", shown));
  if (!metrics_error_.empty()) notice("error", metrics_error_);
  if (metrics_tail_ > 0)
    notice("warning",
           fmt::format("metrics.jsonl ends with an incomplete line ({} bytes; a run killed while "
                       "writing it?); that line is left out.",
                       metrics_tail_));
  if (metrics_bad_lines_ > 0)
    notice("warning",
           metrics_bad_lines_ == 1
               ? fmt::format("1 line of metrics.jsonl is not a valid row and is left out (line "
                             "{}).",
                             metrics_first_bad_)
               : fmt::format("{} lines of metrics.jsonl are not valid rows and are left out (the "
                             "first is line {}).",
                             metrics_bad_lines_, metrics_first_bad_));
  for (const FileState* f : {&config_st_, &summary_st_, &spheres_st_})
    if (!f->error.empty()) notice("warning", f->error);
  if (folder_exists_ && !metrics_seen_ && config_.is_null())
    notice("info", "No config.json or metrics.jsonl in this folder yet: waiting for the run.");
  if (!spheres_.is_null() && !spheres_.is_array()) notice("warning", "spheres.json is no list.");
  return notices;
}

// Status, as the progress line would say it.
json RunReader::status_view(const ViewOptions& opt) const {
  json status;
  const std::string why_stopped = stop_reason();
  if (!folder_exists_) {
    status = {{"state", "gone"}, {"text", "run folder gone"}};
  } else if (summary_done() && !why_stopped.empty()) {
    status = {{"state", "stopped"}, {"text", "stopped: " + why_stopped}};
  } else if (summary_done()) {
    status = {{"state", "finished"}, {"text", "finished"}};
  } else if (!rows_.empty()) {
    status = {{"state", "running"}, {"text", opt.live ? "running" : "in progress (a snapshot)"}};
  } else {
    status = {{"state", "starting"}, {"text", "waiting for the first step"}};
  }
  if (metrics_seen_)
    status["age_s"] = round6(std::max(0.0, now_epoch_s() - double(metrics_mtime_ns_) * 1e-9));
  return status;
}

// Fault and checkpoint events on the step axis; sets `width` to the steps per merged bucket.
json RunReader::events_view(const ViewOptions& opt, int64_t& width) const {
  const auto& R = rows_;
  const int64_t last_step = R.empty() ? 0 : R.back().step;
  std::vector<RunEvent> ev;
  for (const auto& r : R) {
    if (r.resumed_from >= 0)
      ev.push_back({r.step, "resume", 1, fmt::format("resumed from step {}", r.resumed_from)});
    if (r.restarts > 0) ev.push_back({r.step, "restart", r.restarts, {}});
    if (r.deadline_kills > 0) ev.push_back({r.step, "deadline_kill", r.deadline_kills, {}});
    if (r.subtree_restarts > 0) ev.push_back({r.step, "subtree_restart", r.subtree_restarts, {}});
    if (!r.checkpoint.empty()) ev.push_back({r.step, "checkpoint", 1, r.checkpoint});
  }
  if (summary_done() && summary_.is_object()) {
    const std::string ck = summary_.value("checkpoint", std::string());
    if (!ck.empty() && (R.empty() || R.back().checkpoint.empty()))
      ev.push_back({summary_.value("steps", int64_t(0)), "checkpoint", 1, fs::path(ck).filename()});
    if (const std::string why = stop_reason(); !why.empty())
      ev.push_back({summary_.value("steps", int64_t(0)), "stop", 1, why});
  }
  width = 1;
  if (int64_t(ev.size()) > opt.max_events && last_step > 0) {
    width = std::max<int64_t>(1, (last_step + opt.max_events / 5 - 1) / (opt.max_events / 5));
    merge_events(ev, width);
  }
  json arr = json::array();
  for (const auto& e : ev)
    arr.push_back({{"step", e.step}, {"kind", e.kind}, {"count", e.count}, {"detail", e.detail}});
  return arr;
}

json RunReader::view(const ViewOptions& opt) const {
  json v;
  const std::string shown = shown_dir();
  std::string name = fs::path(shown).filename().string();
  if (name.empty()) name = fs::path(shown).parent_path().filename().string();
  v["meta"] = {{"run_dir", shown},
               {"name", name},
               {"generated_at", utc_now()},
               {"live", opt.live},
               {"max_points", opt.max_points}};
  const json notices = notices_view(shown);
  v["status"] = status_view(opt);
  v["progress"] = progress_view(rows_, steps_total(), v["status"]["state"] == "running");
  v["stats"] = stats_view(rows_);
  v["series"] = series_view(rows_, opt.max_points, scheduler_threads());
  int64_t width = 1;
  v["events"] = events_view(opt, width);
  v["events_bucket"] = width;
  v["config"] = config_;
  v["summary"] = summary_;
  v["sample"] = sample_st_.present ? json(sample_) : json();
  v["spheres"] = spheres_view_;
  v["notices"] = notices;
  return v;
}

}  // namespace cllm::run
