#include "run/compare.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>

#include <fmt/format.h>

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
        fmt::format("'{}' is not a run folder (it has no metrics.jsonl)", run_dir));
  std::vector<FingerprintRow> out;
  std::string line;
  while (std::getline(in, line)) {
    // Only rows with a fingerprint are parsed (the others cost a substring search).
    if (line.find("\"weights_fp\"") == std::string::npos) continue;
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    const auto st = j.find("step"), w = j.find("weights_fp"), t = j.find("tensors_fp");
    if (st == j.end() || !st->is_number_integer() || !w->is_string()) continue;
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

json settings_differences(const std::vector<json>& configs) {
  // Every key of every run, each run's value (null where absent).
  std::map<std::string, std::vector<json>> values;
  const auto settings_of = [](const json& c) {
    json s = c.is_object() ? c.value("settings", json::object()) : json::object();
    if (!s.is_object()) s = json::object();
    if (c.is_object()) {
      if (c.contains("backend")) s["backend"] = c["backend"];
      if (c.contains("spheres")) s["spheres"] = c["spheres"];
    }
    s.erase("run-dir");
    return s;
  };
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
    if (std::all_of(row.begin(), row.end(), [&](const json& v) { return v == row.front(); }))
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
  const std::string why = summary_done && summary["stop_reason"].is_string()
                              ? summary["stop_reason"].get<std::string>()
                              : "";
  std::string status = !summary_done ? "incomplete" : why.empty() ? "finished" : "stopped";
  std::string model = settings.is_object() && settings.value("model", json()).is_string()
                          ? settings["model"].get<std::string>()
                          : "";
  if (runc.is_object() && runc.contains("model") && runc["model"].is_object()) {
    const json& m = runc["model"];
    model += fmt::format("{}d {}, {} layers", model.empty() ? "" : " (",
                         m.value("d_model", json()).dump(), m.value("n_layers", json()).dump());
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

}  // namespace cllm::run
