#include "run/report.hpp"

#include <filesystem>

#include <fmt/format.h>

#include "run/run_folder.hpp"
#include "src/atomic_file.hpp"

namespace cllm::run {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Nothing but the page itself may load: no network, no other file. The live page may also
// fetch from the server that sent it.
std::string csp(bool live) {
  return std::string(
             "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
             "img-src data:; base-uri 'none'; form-action 'none'") +
         (live ? "; connect-src 'self'" : "");
}

}  // namespace

std::string dump_for_page(const json& j) {
  const std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace);
  // '<' only occurs inside JSON strings, where \u003c means the same.
  std::string out;
  out.reserve(text.size() + 64);
  for (char c : text) {
    if (c == '<')
      out += "\\u003c";
    else
      out += c;
  }
  return out;
}

namespace {

// Fills a page template's @@KEY@@ placeholders. `js`: the page's script (asset names, joined).
std::string fill_template(std::string_view tpl, const json& data, bool live,
                          const std::string& title, const std::vector<const char*>& js) {
  // Placeholders are replaced in one pass over the template, so that nothing inserted (the
  // script, the data) is ever scanned for placeholders again.
  auto fill = [&](std::string_view key) -> std::string {
    if (key == "CSP") return csp(live);
    if (key == "TITLE") return html_escape(title);
    if (key == "MODE") return live ? "live" : "report";
    if (key == "CSS") return std::string(asset("page.css"));
    if (key == "JS") {
      std::string all;
      for (const char* name : js) all += std::string(asset(name)) + "\n";
      return all;
    }
    if (key == "DATA") return live ? "null" : dump_for_page(data);
    return std::string();
  };
  std::string out;
  out.reserve(tpl.size() + asset("page.js").size() + asset("page.css").size() + 1024);
  size_t pos = 0;
  while (true) {
    const size_t a = tpl.find("@@", pos);
    if (a == std::string_view::npos) break;
    const size_t b = tpl.find("@@", a + 2);
    if (b == std::string_view::npos) break;
    out.append(tpl.substr(pos, a - pos));
    out += fill(tpl.substr(a + 2, b - a - 2));
    pos = b + 2;
  }
  out.append(tpl.substr(pos));
  return out;
}

}  // namespace

std::string render_page(const json& data, bool live) {
  std::string title = "cllm run";
  if (data.is_object() && data.contains("meta"))
    title = "cllm · " + data["meta"].value("name", std::string("run"));
  return fill_template(asset("page.html"), data, live, title, {"page.js"});
}

std::string render_compare_page(const json& data, bool live) {
  const size_t runs = data.is_object() && data.contains("runs") ? data["runs"].size() : 0;
  return fill_template(asset("compare.html"), data, live,
                       live ? std::string("cllm · runs") : fmt::format("cllm · {} runs", runs),
                       {"page.js", "compare.js"});
}

// Through write_file_atomic (a device or FIFO written directly, a symlink written through); a
// folder, a missing folder, a read-only mount or a full disk: one line with the reason.
void write_page_file(const std::string& out_path, const std::string& page) {
  try {
    write_file_atomic(out_path, page);
  } catch (const FileError& e) {
    throw RunFolderError(e.what());
  }
}

ReportResult write_report(const std::string& run_dir, const std::string& out_path,
                          const ViewOptions& opt) {
  std::error_code ec;
  if (!fs::exists(run_dir, ec))
    throw RunFolderError(fmt::format("there is no run folder '{}'", run_dir));
  if (!fs::is_directory(run_dir, ec))
    throw RunFolderError(fmt::format("'{}' is not a folder (give a run folder)", run_dir));
  if (out_path.empty()) throw RunFolderError("option --out needs a file path, got ''");
  if (const std::string why = unreadable_run_file(run_dir); !why.empty()) throw RunFolderError(why);
  // Before anything is read: the page must never replace what it shows.
  try {
    refuse_output_over_inputs(out_path, run_files_read(run_dir), "--out");
  } catch (const std::exception& e) {
    throw RunFolderError(e.what());
  }
  RunReader reader(run_dir);
  reader.refresh();
  if (!reader.looks_like_run())
    throw RunFolderError(fmt::format(
        "'{}' is not a run folder (it has neither config.json nor metrics.jsonl)", run_dir));
  ViewOptions o = opt;
  o.live = false;
  const json view = reader.view(o);
  const std::string page = render_page(view, false);

  ReportResult res;
  res.path = out_path;
  res.bytes = page.size();
  res.rows = int64_t(reader.rows().size());
  for (const auto& n : view["notices"])
    if (n["level"] != "info") res.notices.push_back(n["text"].get<std::string>());
  write_page_file(out_path, page);
  return res;
}

}  // namespace cllm::run
