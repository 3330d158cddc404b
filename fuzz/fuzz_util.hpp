#pragma once
// Shared by the fuzz targets: inputs as files (the readers under test take paths) and the
// property every error message must have.
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
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

// A scratch folder of this process, for targets that need real files: in memory (/dev/shm) where
// there is one, else under $TMPDIR (or /tmp). (On a busy disk one fsync of a checkpoint write
// once stalled 20 s: a "timeout" that was no bug of the code under test.)
inline const std::string& scratch_dir() {
  struct Scratch {
    std::string path;
    Scratch() {
      const char* tmp = std::getenv("TMPDIR");
      std::string base = tmp && *tmp ? tmp : "/tmp";
      if (::access("/dev/shm", W_OK) == 0) base = "/dev/shm";
      path = base + "/cllm-fuzz-XXXXXX";
      if (::mkdtemp(path.data()) == nullptr) {
        std::perror("mkdtemp");
        std::abort();
      }
    }
    ~Scratch() {  // at a normal exit; a crash leaves it for inspection
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Scratch scratch;
  return scratch.path;
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
