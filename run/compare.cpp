#include "run/compare.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "run/run_data.hpp"
#include "src/params.hpp"
#include "src/training.hpp"

namespace cllm::run {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::vector<FingerprintRow> read_fingerprints(const std::string& run_dir) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec))
    throw RunFolderError(fmt::format("there is no run folder '{}'", run_dir));
  const fs::path metrics = fs::path(run_dir) / "metrics.jsonl";
  std::ifstream in(metrics, std::ios::binary);
  if (!in)
    throw RunFolderError(
        fmt::format("'{}' has no metrics.jsonl (not a run folder, or no step done yet)", run_dir));
  std::vector<FingerprintRow> out;
  std::string line;
  while (std::getline(in, line)) {
    // Only rows with a fingerprint are parsed (the others cost a substring search).
    if (line.find("\"weights_fp\"") == std::string::npos) continue;
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    const auto st = j.find("step"), w = j.find("weights_fp"), t = j.find("tensors_fp");
    if (st == j.end() || !st->is_number_integer() || w == j.end() || !w->is_string()) continue;
    FingerprintRow r;
    r.step = st->get<int64_t>();
    r.weights = w->get<std::string>();
    if (t != j.end() && t->is_string()) r.tensors = t->get<std::string>();
    // Steps only grow; a smaller one means the history was rewritten from there (a resume).
    while (!out.empty() && out.back().step >= r.step) out.pop_back();
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<std::string> tensor_names(const json& config) {
  if (!config.is_object() || !config.contains("run")) return {};
  try {
    const RunConfig rc = RunConfig::from_json(config["run"]);
    std::vector<std::string> names;
    const ParamLayout layout(rc.model);
    for (const auto& t : layout.tensors()) names.push_back(t.name);
    return names;
  } catch (const std::exception&) {
    return {};
  }
}

RunDiff diff_runs(const std::vector<FingerprintRow>& a, const std::vector<FingerprintRow>& b,
                  const std::vector<std::string>& names) {
  RunDiff d;
  d.last_a = a.empty() ? 0 : a.back().step;
  d.last_b = b.empty() ? 0 : b.back().step;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (a[i].step < b[j].step) {
      ++i;
    } else if (b[j].step < a[i].step) {
      ++j;
    } else {
      ++d.compared;
      if (a[i].weights != b[j].weights) {
        d.first_differ = a[i].step;
        const std::string &ta = a[i].tensors, &tb = b[j].tensors;
        d.other_models = ta.size() != tb.size();
        if (!d.other_models)
          for (size_t k = 0; k + 8 <= ta.size(); k += 8)
            if (ta.compare(k, 8, tb, k, 8) != 0)
              d.tensors.push_back(k / 8 < names.size() && names.size() * 8 == ta.size()
                                      ? names[k / 8]
                                      : fmt::format("tensor {}", k / 8));
        return d;
      }
      d.through = a[i].step;
      ++i, ++j;
    }
  }
  d.identical = d.compared > 0;
  return d;
}

std::string describe_diff(const RunDiff& d, const std::string& name_a, const std::string& name_b) {
  std::string out;
  if (d.identical) {
    out = fmt::format("identical through step {} ({} steps compared)", d.through, d.compared);
    if (d.last_a != d.last_b)
      out += fmt::format("; {} goes on to step {}", d.last_a > d.last_b ? name_a : name_b,
                         std::max(d.last_a, d.last_b));
    return out + "\n";
  }
  out = fmt::format("first difference at step {}", d.first_differ);
  if (d.through > 0)
    out += fmt::format(" (identical through step {}", d.through);
  else
    out += " (the first step compared";
  if (d.through + 1 < d.first_differ)
    out += fmt::format(
        "; the steps in between have no fingerprint in both runs, so the weights "
        "parted somewhere in steps {} to {}",
        d.through + 1, d.first_differ);
  out += ")\n";
  if (d.other_models) return out + "the runs have different models (other tensors)\n";
  const size_t shown = std::min<size_t>(d.tensors.size(), 12);
  std::string list;
  for (size_t k = 0; k < shown; ++k) list += (k ? ", " : "") + d.tensors[k];
  if (d.tensors.size() > shown) list += fmt::format(" and {} more", d.tensors.size() - shown);
  if (!d.tensors.empty())
    out += fmt::format("tensors that differ ({}): {}\n", d.tensors.size(), list);
  return out;
}

namespace {

// A run's settings as compared: config.json "settings" with the backend and the sphere count of
// the run (the settings' own may be a machine default), without run-dir.
json settings_of(const json& c) {
  json s = c.is_object() ? c.value("settings", json::object()) : json::object();
  if (!s.is_object()) s = json::object();
  if (c.is_object()) {
    if (c.contains("backend")) s["backend"] = c["backend"];
    // Settings written before docs/glossary.md name the backend option "sync" (JSON
    // compatibility): the run's "backend" above says the same, so an old and a new run compare.
    s.erase("sync");
    if (c.contains("spheres")) s["spheres"] = c["spheres"];
  }
  s.erase("run-dir");
  return s;
}

}  // namespace

json settings_differences(const std::vector<json>& configs) {
  // Every key of every run, each run's value (null where absent).
  std::map<std::string, std::vector<json>> values;
  for (size_t r = 0; r < configs.size(); ++r) {
    const json s = settings_of(configs[r]);
    for (const auto& [k, v] : s.items()) {
      auto& row = values[k];
      row.resize(configs.size());
      row[r] = v;
    }
  }
  json out = json::array();
  for (auto& [k, row] : values) {
    row.resize(configs.size());
    const json& first = row.front();  // a lambda may not capture a structured binding (clang 14)
    if (std::all_of(row.begin(), row.end(), [&first](const json& v) { return v == first; }))
      continue;
    out.push_back({{"key", k}, {"values", row}});
  }
  return out;
}

namespace {

json read_json_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return nullptr;
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? json() : j;
}

// The last complete row of metrics.jsonl, read from its end (a long run's file is never read
// whole); null when there is none.
json last_row(const fs::path& p) {
  std::ifstream in(p, std::ios::binary | std::ios::ate);
  if (!in) return nullptr;
  const std::streamoff size = in.tellg();
  for (std::streamoff span = 4096;; span *= 4) {
    const std::streamoff from = std::max<std::streamoff>(0, size - span);
    std::string buf(size_t(size - from), '\0');
    in.seekg(from);
    in.read(buf.data(), std::streamsize(buf.size()));
    buf.resize(size_t(in.gcount()));
    in.clear();
    // Complete lines only: what follows the last newline may be a torn row.
    size_t end = buf.rfind('\n');
    while (end != std::string::npos && end > 0) {
      const size_t begin = buf.rfind('\n', end - 1);
      if (begin == std::string::npos && from > 0) break;  // the line may start further back
      const size_t b = begin == std::string::npos ? 0 : begin + 1;
      json j = json::parse(buf.begin() + long(b), buf.begin() + long(end), nullptr, false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer()) return j;
      if (begin == std::string::npos) break;
      end = begin;
    }
    if (from == 0 || span > (int64_t(1) << 26)) return nullptr;
  }
}

std::string utc_date(fs::file_time_type t) {
  const auto sys = std::chrono::system_clock::now() +
                   std::chrono::duration_cast<std::chrono::system_clock::duration>(
                       t - fs::file_time_type::clock::now());
  const std::time_t tt = std::chrono::system_clock::to_time_t(sys);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", std::gmtime(&tt));
  return buf;
}

json value_or_null(const json& j, const char* key) {
  return j.is_object() && j.contains(key) ? j[key] : json();
}

}  // namespace

bool is_run_folder(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / "config.json", ec) ||
         fs::is_regular_file(fs::path(dir) / "metrics.jsonl", ec);
}

json run_entry(const std::string& run_dir) {
  const fs::path dir(run_dir);
  const json config = read_json_file(dir / "config.json");
  const json summary = read_json_file(dir / "summary.json");
  const json last = last_row(dir / "metrics.jsonl");
  std::error_code ec;
  auto when = fs::last_write_time(dir / "config.json", ec);
  if (ec) when = fs::last_write_time(dir / "metrics.jsonl", ec);
  const json settings = config.is_object() ? config.value("settings", json::object()) : json();
  const json runc = config.is_object() ? config.value("run", json::object()) : json();
  const int64_t last_step = last.is_object() ? last["step"].get<int64_t>() : 0;
  const bool summary_done = summary.is_object() && summary.contains("steps") &&
                            summary["steps"].is_number_integer() &&
                            summary["steps"].get<int64_t>() >= last_step;
  const json stop = summary_done ? summary.value("stop_reason", json()) : json();
  const std::string why = stop.is_string() ? stop.get<std::string>() : "";
  std::string status = !summary_done ? "incomplete" : why.empty() ? "finished" : "stopped";
  std::string model = settings.is_object() && settings.value("model", json()).is_string()
                          ? settings["model"].get<std::string>()
                          : "";
  if (runc.is_object() && runc.contains("model") && runc["model"].is_object()) {
    const json& m = runc["model"];
    model += fmt::format("{}d {}, {} layers", model.empty() ? "" : " (",
                         m.value("d_model", json()).dump(), m.value(layers_key(m), json()).dump());
    if (settings.is_object() && settings.value("model", json()).is_string()) model += ")";
  }
  std::string tokenizer = "byte";
  if (settings.is_object() && settings.value("tokenizer", json()).is_string() &&
      !settings["tokenizer"].get<std::string>().empty())
    tokenizer = fs::path(settings["tokenizer"].get<std::string>()).filename().string();
  json final_loss = summary_done ? value_or_null(summary, "final_loss") : json();
  if (final_loss.is_null() && last.is_object()) final_loss = value_or_null(last, "loss");
  return {{"name", dir.filename().string()},
          {"dir", run_dir},
          {"date", ec ? json() : json(utc_date(when))},
          {"status", status},
          {"stop_reason", why},
          {"steps", last_step},
          {"planned_steps", value_or_null(runc, "steps")},
          {"final_loss", final_loss},
          {"tokens_per_s", summary_done ? value_or_null(summary, "tokens_per_s") : json()},
          {"tokenizer", tokenizer},
          {"model", model},
          {"backend", value_or_null(config, "backend")},
          {"spheres", value_or_null(config, "spheres")}};
}

json list_runs(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw RunFolderError(fmt::format("there is no folder '{}'", dir));
  json out = json::array();
  if (is_run_folder(dir)) {
    out.push_back(run_entry(dir));
    return out;
  }
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_directory(ec) && is_run_folder(e.path().string())) dirs.push_back(e.path().string());
  for (const auto& d : dirs) out.push_back(run_entry(d));
  std::vector<json> sorted(out.begin(), out.end());
  std::stable_sort(sorted.begin(), sorted.end(), [](const json& a, const json& b) {
    const std::string da = a["date"].is_string() ? a["date"].get<std::string>() : "";
    const std::string db = b["date"].is_string() ? b["date"].get<std::string>() : "";
    return da != db ? da < db : a["name"].get<std::string>() < b["name"].get<std::string>();
  });
  return json(sorted);
}

namespace {

// The series the compare page overlays.
struct Metric {
  const char* name;
  double StepRow::*field;
};
constexpr Metric kMetrics[] = {{"loss", &StepRow::loss},
                               {"val_bpb", &StepRow::val_bpb},
                               {"tokens_per_s", &StepRow::tokens_per_s},
                               {"step_ms", &StepRow::step_ms},
                               {"cpu_s", &StepRow::cpu_s},
                               {"rss_mb", &StepRow::rss_mb},
                               {"nodes_cpu_s", &StepRow::nodes_cpu_s},
                               {"nodes_rss_mb", &StepRow::nodes_rss_mb}};

// One run's series: the drawn rows' steps (x), training time in seconds (t: the steps' times
// summed, so runs line up by the time they trained) and values (y).
json run_series(const std::vector<StepRow>& R, int max_points) {
  std::vector<double> t(R.size());
  double acc = 0;
  for (size_t i = 0; i < R.size(); ++i) {
    if (std::isfinite(R[i].step_ms)) acc += R[i].step_ms / 1e3;
    t[i] = acc;
  }
  json out = json::object();
  for (const Metric& m : kMetrics) {
    const auto get = [&R, &m](size_t i) { return R[i].*m.field; };
    json xs = json::array(), ts = json::array(), ys = json::array();
    for (size_t i : decimate_indices(R.size(), get, max_points)) {
      xs.push_back(R[i].step);
      ts.push_back(round6(t[i]));
      ys.push_back(round6(get(i)));
    }
    out[m.name] = {{"x", std::move(xs)}, {"t", std::move(ts)}, {"y", std::move(ys)}};
  }
  return out;
}

// Over the runs of a group, per step: the smallest, the largest and the mean value of a metric
// (of the runs that have one at that step), in at most max_points/2 buckets of steps.
json group_band(const std::vector<const std::vector<StepRow>*>& runs, double StepRow::*field,
                int max_points) {
  struct Acc {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0;
    int64_t n = 0;
  };
  std::map<int64_t, Acc> sparse;
  std::vector<Acc> dense;
  int64_t max_step = 0;
  for (const auto* R : runs)
    if (!R->empty()) max_step = std::max(max_step, R->back().step);
  const bool use_dense = max_step < (int64_t(1) << 24);
  if (use_dense) dense.resize(size_t(max_step) + 1);
  for (const auto* R : runs)
    for (const StepRow& r : *R) {
      const double v = r.*field;
      if (!std::isfinite(v) || r.step < 0) continue;
      Acc& a = use_dense ? dense[size_t(r.step)] : sparse[r.step];
      a.lo = std::min(a.lo, v), a.hi = std::max(a.hi, v), a.sum += v, ++a.n;
    }
  std::vector<std::pair<int64_t, Acc>> pts;
  if (use_dense) {
    for (size_t st = 0; st < dense.size(); ++st)
      if (dense[st].n > 0) pts.emplace_back(int64_t(st), dense[st]);
  } else {
    pts.assign(sparse.begin(), sparse.end());
  }
  const size_t buckets = std::min(pts.size(), size_t(std::max(1, max_points / 2)));
  json xs = json::array(), lo = json::array(), hi = json::array(), mean = json::array();
  for (size_t b = 0; b < buckets; ++b) {
    const size_t from = b * pts.size() / buckets, to = (b + 1) * pts.size() / buckets;
    Acc a;
    double means = 0;
    for (size_t k = from; k < to; ++k) {
      const Acc& p = pts[k].second;
      a.lo = std::min(a.lo, p.lo), a.hi = std::max(a.hi, p.hi);
      means += p.sum / double(p.n);
    }
    xs.push_back(pts[to - 1].first);
    lo.push_back(round6(a.lo)), hi.push_back(round6(a.hi));
    mean.push_back(round6(means / double(to - from)));
  }
  return {{"x", xs}, {"lo", lo}, {"hi", hi}, {"mean", mean}};
}

// Where the computing spheres' time went over the whole run, as shares (as the report's chart
// of one run: wait = min(spheres computing, scheduler threads) x step time - the rest); null
// when the rows have no time split.
json time_split(const std::vector<StepRow>& R, int threads) {
  TimeSplit t;
  for (const StepRow& q : R) t.add(q, threads);
  const double total = t.total();
  if (!(total > 0)) return nullptr;
  return {{"compute", round6(t.compute / total)},
          {"fold", round6(t.fold / total)},
          {"reduce", round6(t.reduce / total)},
          {"wait", round6(t.wait / total)}};
}

int threads_of(const json& config) {
  const json s = settings_of(config);
  const json t = s.value("threads", json());
  return t.is_number_integer() && t.get<int64_t>() > 0 && t.get<int64_t>() < (1 << 30)
             ? int(t.get<int64_t>())
             : 0;
}

std::string value_text(const json& v) {
  if (v.is_null()) return "(not set)";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

json diff_json(const RunDiff& d) {
  return {{"identical", d.identical},
          {"compared", d.compared},
          {"through", d.through},
          {"first_differ", d.first_differ},
          {"tensors", d.tensors},
          {"other_models", d.other_models},
          {"text", describe_diff(d, "the first run", "the other run")}};
}

// Groups: the runs of each value of `group_by`, with a band per metric against the step; each
// run's entry in `runs` gets its group's index.
json group_runs(json& runs, const std::vector<json>& configs,
                const std::vector<std::unique_ptr<RunReader>>& readers, const std::string& group_by,
                int max_points) {
  const size_t n = configs.size();
  std::vector<json> values(n);
  bool any = false;
  for (size_t r = 0; r < n; ++r) {
    const json s = settings_of(configs[r]);
    if (s.contains(group_by)) values[r] = s[group_by], any = true;
  }
  if (!any)
    throw RunFolderError(fmt::format(
        "--group-by {}: none of the runs has that setting (see the keys of \"settings\" in a "
        "run's config.json, e.g. lr, spheres, backend)",
        group_by));
  std::vector<std::pair<json, std::vector<size_t>>> groups;
  for (size_t r = 0; r < n; ++r) {
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == values[r]; });
    if (it == groups.end()) {
      groups.push_back({values[r], {}});
      it = groups.end() - 1;
    }
    it->second.push_back(r);
    runs[r]["group"] = int(it - groups.begin());
  }
  json gs = json::array();
  for (const auto& [value, members] : groups) {
    std::vector<const std::vector<StepRow>*> rows;
    for (size_t r : members) rows.push_back(&readers[r]->rows());
    json bands = json::object();
    for (const Metric& m : kMetrics) bands[m.name] = group_band(rows, m.field, max_points);
    gs.push_back({{"value", value_text(value)}, {"runs", members}, {"bands", bands}});
  }
  return gs;
}

// Where the runs' weights part: two runs against each other, more runs each against the first
// (a "diff" in each later run's entry of `runs`).
void mark_where_weights_part(json& runs, const std::vector<std::string>& run_dirs,
                             const std::vector<json>& configs) {
  const size_t n = run_dirs.size();
  std::vector<std::vector<FingerprintRow>> fps(n);
  for (size_t r = 0; r < n; ++r) {
    try {
      fps[r] = read_fingerprints(run_dirs[r]);
    } catch (const RunFolderError&) {
      // no metrics.jsonl: nothing to compare
    }
  }
  const std::vector<std::string> names = tensor_names(configs.empty() ? json() : configs[0]);
  for (size_t r = 1; r < n; ++r) {
    if (fps[0].empty() || fps[r].empty()) continue;
    const RunDiff d = diff_runs(fps[0], fps[r], names);
    if (d.compared > 0) runs[r]["diff"] = diff_json(d);
  }
}

}  // namespace

json compare_view(const std::vector<std::string>& run_dirs, const CompareOptions& o) {
  const size_t n = run_dirs.size();
  // About 40,000 points per chart however many runs (200 runs: 200 points each).
  const int max_points = o.max_points > 0
                             ? o.max_points
                             : int(std::clamp<size_t>(40000 / std::max<size_t>(1, n), 200, 2000));
  std::vector<std::unique_ptr<RunReader>> readers;
  std::vector<json> configs;
  json runs = json::array(), notices = json::array();
  for (const auto& dir : run_dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
      throw RunFolderError(fmt::format("there is no run folder '{}'", dir));
    auto reader = std::make_unique<RunReader>(dir);
    reader->refresh();
    if (!reader->looks_like_run())
      throw RunFolderError(fmt::format(
          "'{}' is not a run folder (it has neither config.json nor metrics.jsonl)", dir));
    ViewOptions vo;
    vo.max_points = 2;  // only the figures are used; the compare page draws its own series
    const json v = reader->view(vo);
    for (const auto& note : v["notices"])
      if (note["level"] != "info")
        notices.push_back({{"level", note["level"]},
                           {"text", fmt::format("{}: {}", v["meta"]["name"].get<std::string>(),
                                                note["text"].get<std::string>())}});
    const json& sm = v["summary"].is_object() ? v["summary"] : json::object();
    const json& st = v["stats"];
    const auto from_summary = [&sm](const char* key, const json& fallback) {
      return sm.contains(key) && sm[key].is_number() ? sm[key] : fallback;
    };
    runs.push_back(
        {{"name", v["meta"]["name"]},
         {"dir", v["meta"]["run_dir"]},
         {"status", v["status"]},
         {"steps", st["last_step"]},
         {"final_loss",
          from_summary("final_loss",
                       st["loss"]["last"].is_object() ? st["loss"]["last"]["value"] : json())},
         {"val_bpb", st["val_bpb"]["last"].is_object() ? st["val_bpb"]["last"]["value"] : json()},
         {"tokens_per_s_median", st["tokens_per_s_median"]},
         {"restarts", from_summary("restarts", st["restarts"])},
         {"nodes_lost", from_summary("nodes_lost", 0)},
         {"wall_s", from_summary("wall_s", json())},
         {"time_split", time_split(reader->rows(), threads_of(v["config"]))},
         {"series", run_series(reader->rows(), max_points)}});
    configs.push_back(v["config"]);
    readers.push_back(std::move(reader));
  }

  json view = {{"meta",
                {{"mode", "compare"},
                 {"generated_at", utc_now()},
                 {"runs", n},
                 {"max_points", max_points},
                 {"group_by", o.group_by.empty() ? json() : json(o.group_by)}}},
               {"differ", settings_differences(configs)},
               {"notices", notices}};

  if (!o.group_by.empty())
    view["groups"] = group_runs(runs, configs, readers, o.group_by, max_points);
  mark_where_weights_part(runs, run_dirs, configs);
  view["runs"] = std::move(runs);
  return view;
}

CompareSource::CompareSource(std::vector<std::string> dirs, std::string parent, CompareOptions o)
    : dirs_(std::move(dirs)), parent_(std::move(parent)), opt_(std::move(o)) {}

uint64_t CompareSource::refresh() {
  if (!parent_.empty()) {
    std::vector<std::string> found;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(parent_, ec))
      if (e.is_directory(ec) && is_run_folder(e.path().string()))
        found.push_back(e.path().string());
    std::sort(found.begin(), found.end());
    dirs_ = std::move(found);
  }
  Fnv1a v;  // over the names, sizes and times
  const auto mix = [&v](uint64_t x) { v.mix(x); };
  for (const auto& d : dirs_) {
    for (char c : d) mix(uint64_t(uint8_t(c)));
    for (const char* f : {"config.json", "metrics.jsonl", "summary.json"}) {
      std::error_code ec;
      const fs::path p = fs::path(d) / f;
      const auto size = fs::file_size(p, ec);
      mix(ec ? ~uint64_t(0) : uint64_t(size));
      const auto t = fs::last_write_time(p, ec);
      mix(ec ? 0 : uint64_t(t.time_since_epoch().count()));
    }
  }
  return v.h;
}

json CompareSource::view() const {
  std::vector<std::string> present;
  json gone = json::array();
  for (const auto& d : dirs_) {
    std::error_code ec;
    if (fs::is_directory(d, ec) && is_run_folder(d))
      present.push_back(d);
    else
      gone.push_back({{"level", "warning"},
                      {"text", fmt::format("the run folder '{}' is gone or is no run (yet)", d)}});
  }
  json v;
  try {
    v = compare_view(present, opt_);
  } catch (const RunFolderError& e) {  // --group-by a setting none of the runs has (yet)
    CompareOptions plain = opt_;
    plain.group_by.clear();
    v = compare_view(present, plain);
    gone.push_back({{"level", "warning"}, {"text", e.what()}});
  }
  for (auto& n : gone) v["notices"].push_back(std::move(n));
  if (present.empty())
    v["notices"].push_back(
        {{"level", "info"},
         {"text", parent_.empty() ? std::string("none of the runs is there")
                                  : fmt::format("no runs in '{}' yet", parent_)}});
  v["meta"]["live"] = true;
  return v;
}

ReportResult write_compare_report(const std::vector<std::string>& run_dirs,
                                  const std::string& out_path, const CompareOptions& o) {
  const json view = compare_view(run_dirs, o);
  const std::string page = render_compare_page(view);
  ReportResult res;
  res.path = out_path;
  res.bytes = page.size();
  res.rows = int64_t(run_dirs.size());
  for (const auto& n : view["notices"]) res.notices.push_back(n["text"].get<std::string>());
  write_page_file(out_path, page);
  return res;
}

}  // namespace cllm::run
