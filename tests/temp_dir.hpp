#pragma once
// A fresh folder for one test, removed with everything in it at the end of its scope. Every test
// program uses this one (mkdtemp: unique across processes and threads without a counter).
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cllm::test {

class TempDir {
 public:
  // Under $TMPDIR (or /tmp), named `prefix`-XXXXXX.
  explicit TempDir(const std::string& prefix = "cllm-test") : path(make(prefix)) {}
  ~TempDir() {
    std::error_code ec;
    // A test may have taken the owner's rights away (a read-only folder): give them back first.
    std::filesystem::permissions(path, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path path;

  std::string str() const { return path.string(); }
  // path/name as a string (a file's name to hand to the code under test).
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::string operator/(const std::string& name) const { return file(name); }
  // Writes `data` to path/rel (creating folders); the full path.
  std::string write(const std::string& rel, const std::string& data) const {
    const std::filesystem::path p = path / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(data.data(), std::streamsize(data.size()));
    if (!f) throw std::runtime_error("cannot write " + p.string());
    return p.string();
  }

 private:
  static std::filesystem::path make(const std::string& prefix) {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed for " + templ);
    return buf.data();
  }
};

}  // namespace cllm::test
