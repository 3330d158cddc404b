#pragma once
// A small option table for the command line and config files: one declaration per option
// (names, help, default shown in --help, setter), strict value parsing, one-line errors.
#include <functional>
#include <map>
#include <set>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace cllm::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What an option is to a run: whether it is recorded in config.json and the checkpoints, and
// whether --resume takes it from there when it is not given again.
enum class Scope {
  action,     // what to do now (--help, --resume, ...): not recorded
  numbers,    // decides the numbers: recorded, inherited, must match the checkpoint
  cadence,    // the run's rhythm and data (eval, checkpoints, corpus): recorded, inherited
  placement,  // where and how it computes (backend, spheres): recorded, free to change on resume
  output,     // what it shows and samples, fault injection: recorded, not inherited
};

class OptionTable {
 public:
  using Setter = std::function<void(const std::string& value)>;
  using Getter = std::function<nlohmann::json()>;  // the current value, for config.json
  // `names`: "--steps" or "--batch,--batch-size" (first is canonical). `arg` empty = a flag.
  OptionTable& add(const std::string& names, const std::string& arg, const std::string& help,
                   const std::string& def, Setter set);
  // Makes the option added last a recorded one (see Scope).
  OptionTable& record(Scope scope, Getter get);
  OptionTable& section(const std::string& title);
  // A removed option: naming it (command line or config file) is a UsageError whose one line
  // says `instead` (e.g. "use --run-dir"), rather than the bare "unknown option".
  OptionTable& retire(const std::string& name, const std::string& instead);

  // {"steps": 2000, "lr": 0.001, ...}: every recorded option by its canonical name without "--".
  nlohmann::json to_json() const;
  // Sets the options of `scopes` found in `values` (as written by to_json) that were not given
  // on the command line or in a config file. Unknown keys are ignored (a newer or older run).
  void inherit(const nlohmann::json& values, const std::set<Scope>& scopes);

  // Parses argv (after the subcommand). Supports --name value, --name=value and flags.
  // Where the table declares --config, values from `--config FILE` (lines "name = value", '#'
  // comments, [sections] ignored) are applied first, so the command line overrides them.
  // Throws UsageError.
  void parse(const std::vector<std::string>& args);
  // Applies the lines of a config file's text (as read from `source`, named in errors): lines
  // "name = value" or "name" (a flag); '#' and ';' start comment lines, " #" a trailing comment
  // (outside quotes); [sections] are ignored; a UTF-8 byte-order mark is skipped. Every error
  // names the source and line. Throws UsageError.
  void parse_config_text(const std::string& text, const std::string& source);
  // Config files larger than this are refused before they are read.
  static constexpr size_t kMaxConfigBytes = size_t(1) << 20;
  std::string help() const;
  // Whether an option (by its canonical, first name) was set by the command line or config file.
  bool given(const std::string& canonical) const { return given_.count(canonical) > 0; }
  const std::set<std::string>& given_names() const { return given_; }
  void set_given(std::set<std::string> names) { given_ = std::move(names); }
  std::vector<std::string> positionals;

 private:
  struct Opt {
    std::vector<std::string> names;
    std::string arg, help, def;
    Setter set;
    std::string section;
    Scope scope = Scope::action;
    Getter get;
  };
  const Opt* find(const std::string& name) const;
  void apply(const Opt& o, const std::string& name, const std::string& value);
  void load_config(const std::string& path);
  [[noreturn]] void unknown(const std::string& name) const;  // throws UsageError
  std::vector<Opt> opts_;
  std::map<std::string, std::string> retired_;  // "--checkpoint-dir" -> "use --run-dir ..."
  std::string section_;
  std::set<std::string> given_;
};

// Strict conversions: the whole text must be a number in range, else UsageError naming `opt`.
long long to_int(const std::string& opt, const std::string& v, long long lo, long long hi);
double to_double(const std::string& opt, const std::string& v);
std::vector<std::string> split(const std::string& s, char sep);

}  // namespace cllm::cli
