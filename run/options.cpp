#include "run/options.hpp"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "src/config.hpp"
#include "src/regular_file.hpp"
#include "src/safe_text.hpp"

namespace cllm::cli {

namespace {
std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}
}  // namespace

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    const auto e = s.find(sep, pos);
    out.push_back(s.substr(pos, e == std::string::npos ? std::string::npos : e - pos));
    if (e == std::string::npos) break;
    pos = e + 1;
  }
  return out;
}

long long to_int(const std::string& opt, const std::string& v, long long lo, long long hi) {
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  // The whole text must be the number: no NUL byte inside it (c_str() would stop there), no
  // leading white space (strtoll would skip "\v\f" that trim() leaves).
  if (v.empty() || std::isspace(static_cast<unsigned char>(v[0])) || end != v.c_str() + v.size())
    throw UsageError(fmt::format("option {} expects an integer, got '{}'", opt, printable(v, 80)));
  if (errno == ERANGE || x < lo || x > hi)
    throw UsageError(
        fmt::format("option {} must be in [{}, {}], got {}", opt, lo, hi, printable(v, 80)));
  return x;
}

double to_double(const std::string& opt, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || std::isspace(static_cast<unsigned char>(v[0])) || end != v.c_str() + v.size() ||
      std::isnan(x))
    throw UsageError(fmt::format("option {} expects a number, got '{}'", opt, printable(v, 80)));
  // strtod flags ERANGE for overflow and for results below the normal range. Subnormal numbers
  // (1e-320) are exact readings of what was written and are accepted; a value that only rounds
  // to 0 or to infinity is refused with the reason.
  if (errno == ERANGE && std::isinf(x))
    throw UsageError(fmt::format("option {}: '{}' is too large to be represented (above 1.8e308)",
                                 opt, printable(v, 80)));
  if (errno == ERANGE && x == 0)
    throw UsageError(fmt::format(
        "option {}: '{}' is too close to 0 to be represented (below 4.9e-324); write 0 for 0", opt,
        printable(v, 80)));
  if (std::isinf(x))
    throw UsageError(
        fmt::format("option {} expects a finite number, got '{}'", opt, printable(v, 80)));
  return x;
}

OptionTable& OptionTable::add(const std::string& names, const std::string& arg,
                              const std::string& help, const std::string& def, Setter set) {
  opts_.push_back(
      Opt{split(names, ','), arg, help, def, std::move(set), section_, Scope::action, {}});
  return *this;
}

OptionTable& OptionTable::record(Scope scope, Getter get) {
  opts_.back().scope = scope;
  opts_.back().get = std::move(get);
  return *this;
}

nlohmann::json OptionTable::to_json() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& o : opts_)
    if (o.get) out[o.names.front().substr(2)] = o.get();
  return out;
}

void OptionTable::inherit(const nlohmann::json& values, const std::set<Scope>& scopes) {
  if (!values.is_object()) return;
  for (const auto& o : opts_) {
    const auto it = values.find(o.names.front().substr(2));
    if (!o.get || !scopes.count(o.scope) || given(o.names.front()) || it == values.end() ||
        it->is_null())
      continue;
    if (it->is_boolean()) {  // a flag
      if (it->get<bool>()) o.set("");
      continue;
    }
    // Numbers go back through the same parser as the command line: dump() writes the shortest
    // text that reads back as the same double, so an inherited value is exact. An object is a
    // path that is not UTF-8 (src/safe_text.hpp).
    const std::string value = it->is_string()   ? it->get<std::string>()
                              : it->is_object() ? path_from_json(*it)
                                                : it->dump();
    apply(o, o.names.front(), value);
    given_.erase(o.names.front());  // inherited, not given
  }
}

OptionTable& OptionTable::section(const std::string& title) {
  section_ = title;
  return *this;
}

OptionTable& OptionTable::retire(const std::string& name, const std::string& instead) {
  retired_[name] = instead;
  return *this;
}

void OptionTable::unknown(const std::string& name) const {
  if (const auto it = retired_.find(name); it != retired_.end())
    throw UsageError(fmt::format("option {} was removed: {}", name, it->second));
  throw UsageError(fmt::format("unknown option '{}' (see --help)", printable(name, 60)));
}

const OptionTable::Opt* OptionTable::find(const std::string& name) const {
  for (const auto& o : opts_)
    for (const auto& n : o.names)
      if (n == name) return &o;
  return nullptr;
}

void OptionTable::apply(const Opt& o, const std::string& name, const std::string& value) {
  try {
    o.set(value);
    given_.insert(o.names.front());
  } catch (const UsageError&) {
    throw;
  } catch (const ConfigError& e) {  // already names the option
    throw UsageError(e.what());
  } catch (const std::exception& e) {
    throw UsageError(fmt::format("option {}: {}", name, e.what()));
  }
}

void OptionTable::load_config(const std::string& path) {
  parse_config_text(read_regular_file<UsageError>(path, kMaxConfigBytes, "config file"), path);
}

void OptionTable::parse_config_text(const std::string& text, const std::string& source) {
  const std::string shown = printable(source, 200);
  size_t pos = 0;
  // A UTF-8 byte-order mark, as some editors write it.
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) pos = 3;
  int lineno = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = trim(text.substr(pos, nl - pos));
    pos = nl + 1;
    ++lineno;
    const auto fail = [&](const std::string& what) {
      return UsageError(fmt::format("config file '{}' line {}: {}", shown, lineno, what));
    };
    if (line.empty() || line[0] == '#' || line[0] == ';' || line[0] == '[') continue;
    // A trailing comment: '#' after a space or tab, outside quotes.
    char quote = 0;
    for (size_t i = 1; i < line.size(); ++i) {
      const char c = line[i];
      if (quote != 0) {
        if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        if (line[i - 1] == ' ' || line[i - 1] == '\t' || line[i - 1] == '=') quote = c;
      } else if (c == '#' && (line[i - 1] == ' ' || line[i - 1] == '\t')) {
        line = trim(line.substr(0, i));
        break;
      }
    }
    const auto eq = line.find('=');
    const std::string name = trim(line.substr(0, eq));
    const std::string key = "--" + name;
    // (A name of dashes only has no option behind them: it is an unknown option, below.)
    const size_t undashed = name.find_first_not_of('-');
    if (undashed != std::string::npos && undashed > 0 && find("--" + name.substr(undashed)))
      throw fail(
          fmt::format("write '{}' without the dashes: a config file names options as "
                      "'steps = 3'",
                      printable(name, 60)));
    const Opt* o = find(key);
    if (const auto it = retired_.find(key); !o && it != retired_.end())
      throw fail(fmt::format("option '{}' was removed: {}", name, it->second));
    if (!o || key == "--config")
      throw fail(fmt::format("unknown option '{}'", printable(name, 60)));
    std::string value = eq == std::string::npos ? "" : trim(line.substr(eq + 1));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front())
      value = value.substr(1, value.size() - 2);
    if (eq == std::string::npos && !o->arg.empty())
      throw fail(fmt::format("'{}' needs a value", name));
    if (o->arg.empty() && eq != std::string::npos) {  // a flag: "resume = true" or "= false"
      if (value == "false" || value == "0" || value == "no") continue;
      if (value != "true" && value != "1" && value != "yes")
        throw fail(fmt::format("'{}' expects true or false, got '{}'", name, printable(value, 60)));
    }
    try {
      apply(*o, key, value);
    } catch (const UsageError& e) {
      throw fail(e.what());
    }
  }
}

void OptionTable::parse(const std::vector<std::string>& args) {
  // The config file first, wherever --config appears, so that the command line wins. Only a
  // table that declares --config reads one; elsewhere it is an unknown option like any other.
  const bool has_config = find("--config") != nullptr;
  for (size_t i = 0; has_config && i < args.size(); ++i) {
    if (args[i] == "--config") {
      if (i + 1 >= args.size()) throw UsageError("option --config needs a file");
      load_config(args[i + 1]);
    } else if (args[i].rfind("--config=", 0) == 0) {
      load_config(args[i].substr(9));
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 2 || a[0] != '-' || a == "-") {
      positionals.push_back(a);
      continue;
    }
    std::string name = a, value;
    bool has_value = false;
    if (const auto eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq), value = a.substr(eq + 1), has_value = true;
    }
    if (has_config && name == "--config") {
      if (!has_value) ++i;
      continue;
    }
    const Opt* o = find(name);
    if (!o) unknown(name);
    if (o->arg.empty()) {
      if (has_value) throw UsageError(fmt::format("option {} takes no value", name));
    } else if (!has_value) {
      if (i + 1 >= args.size())
        throw UsageError(fmt::format("option {} needs a value ({})", name, o->arg));
      value = args[++i];
    }
    apply(*o, name, value);
  }
}

std::string OptionTable::help() const {
  std::string out, section = "\x01";
  for (const auto& o : opts_) {
    if (o.section != section) {
      section = o.section;
      if (!section.empty()) out += "\n" + section + ":\n";
    }
    std::string names;
    for (const auto& n : o.names) names += (names.empty() ? "" : ", ") + n;
    if (!o.arg.empty()) names += " " + o.arg;
    out += fmt::format("  {:<34} {}", names, o.help);
    if (!o.def.empty()) out += fmt::format(" [default: {}]", o.def);
    out += "\n";
  }
  return out;
}

}  // namespace cllm::cli
