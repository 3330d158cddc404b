#pragma once
// Opening a file that cllm loads: only a regular file, and only one no larger than the limit the
// caller names, both checked before a byte is read. A FIFO, a device (/dev/zero) or a socket is
// refused at once: open() uses O_NONBLOCK, because opening a FIFO for reading otherwise blocks
// until a writer appears, and reading /dev/zero never ends. Every loader goes through here.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace cllm {

// An open regular file; closes its descriptor.
class RegularFile {
 public:
  RegularFile() = default;
  ~RegularFile();
  RegularFile(RegularFile&& o) noexcept;
  RegularFile& operator=(RegularFile&& o) noexcept;
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;

  // Opens `path` (following symlinks) as described above. On failure returns a closed file and
  // sets `why` to one line naming `what` ("tokenizer file"), the path and the reason; the limit,
  // when that is the reason.
  static RegularFile open(const std::string& path, uint64_t max_bytes, const std::string& what,
                          std::string& why);

  bool is_open() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }  // the caller closes it
  uint64_t size() const { return size_; }           // at open time
  unsigned mode() const { return mode_; }           // st_mode at open time
  int open_errno() const { return open_errno_; }    // after a failed open(): its errno, else 0

  // The whole file, at most the limit it was opened with (a file that grew meanwhile is cut
  // there and reported). Returns false and sets `why` on a read error or growth past the limit.
  bool read_all(std::string& out, std::string& why) const;

 private:
  std::string path_, what_;
  uint64_t max_ = 0, size_ = 0;
  unsigned mode_ = 0;
  int open_errno_ = 0;
  int fd_ = -1;
};

// A file could not be loaded; what() is one line.
struct LoadError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Opens `path` as above, throwing Error(why) on failure.
template <class Error = LoadError>
RegularFile open_regular_file(const std::string& path, uint64_t max_bytes,
                              const std::string& what) {
  std::string why;
  RegularFile f = RegularFile::open(path, max_bytes, what, why);
  if (!f.is_open()) throw Error(why);
  return f;
}

// The whole of a regular file of at most `max_bytes`, throwing Error(why) on failure.
template <class Error = LoadError>
std::string read_regular_file(const std::string& path, uint64_t max_bytes,
                              const std::string& what) {
  std::string why, text;
  if (!open_regular_file<Error>(path, max_bytes, what).read_all(text, why)) throw Error(why);
  return text;
}

// "64 MiB", "1 GiB", "4096 bytes": a limit as people read it.
std::string byte_limit_text(uint64_t bytes);

}  // namespace cllm
