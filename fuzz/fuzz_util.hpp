#pragma once
// Shared by the fuzz targets: inputs as files (the readers under test take paths) and the
// property every error message must have.
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "src/safe_text.hpp"

namespace fuzz {

// A file held in memory (memfd), reachable by path as /proc/self/fd/N; set() replaces its bytes.
class MemFile {
 public:
  explicit MemFile(const char* name) {
    fd_ = ::memfd_create(name, MFD_CLOEXEC);
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  void set(const uint8_t* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0 || (size > 0 && ::pwrite(fd_, data, size, 0) != ssize_t(size))) {
      std::perror("memfd write");
      std::abort();
    }
  }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// A scratch folder of this process under $TMPDIR (or /tmp), for targets that need real files.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base && *base ? base : "/tmp") + "/cllm-fuzz-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    return templ;
  }();
  return dir;
}

// Errors reach the user as one line: never empty, no line break or other control byte, valid
// UTF-8 (bytes from the input must have been escaped).
inline void check_message(const char* what) {
  const std::string s(what);
  bool ok = !s.empty() && cllm::valid_utf8(s);
  for (const char c : s) ok = ok && !(static_cast<unsigned char>(c) < 0x20 || c == 0x7f);
  if (!ok) {
    std::fprintf(stderr, "bad error message: %s\n", cllm::printable(s).c_str());
    std::abort();
  }
}

// A failed property of the code under test.
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "property violated: %s\n", cllm::printable(what).c_str());
  std::abort();
}

}  // namespace fuzz
