#include "src/regular_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "src/safe_text.hpp"

namespace cllm {

namespace {

const char* kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "something else";
}

}  // namespace

std::string byte_limit_text(uint64_t bytes) {
  if (bytes >= (uint64_t(1) << 30) && bytes % (uint64_t(1) << 30) == 0)
    return fmt::format("{} GiB", bytes >> 30);
  if (bytes >= (uint64_t(1) << 20) && bytes % (uint64_t(1) << 20) == 0)
    return fmt::format("{} MiB", bytes >> 20);
  if (bytes >= (uint64_t(1) << 10) && bytes % (uint64_t(1) << 10) == 0)
    return fmt::format("{} KiB", bytes >> 10);
  return fmt::format("{} bytes", bytes);
}

RegularFile::~RegularFile() {
  if (fd_ >= 0) ::close(fd_);
}

RegularFile::RegularFile(RegularFile&& o) noexcept
    : path_(std::move(o.path_)),
      what_(std::move(o.what_)),
      max_(o.max_),
      size_(o.size_),
      mode_(o.mode_),
      open_errno_(o.open_errno_),
      fd_(std::exchange(o.fd_, -1)) {}

RegularFile& RegularFile::operator=(RegularFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_), what_ = std::move(o.what_);
    max_ = o.max_, size_ = o.size_, mode_ = o.mode_, open_errno_ = o.open_errno_;
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

RegularFile RegularFile::open(const std::string& path, uint64_t max_bytes, const std::string& what,
                              std::string& why) {
  const std::string shown = printable(path, 200);
  RegularFile f;
  // O_NONBLOCK: a FIFO opens at once instead of waiting for a writer; O_NOCTTY: a terminal
  // device named by mistake does not become our controlling terminal.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    f.open_errno_ = errno;
    why = fmt::format("cannot read {} '{}': {}", what, shown, std::strerror(f.open_errno_));
    return f;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    why = fmt::format("cannot read {} '{}': {}", what, shown, std::strerror(errno));
    ::close(fd);
    return f;
  }
  if (!S_ISREG(st.st_mode)) {
    why = fmt::format("{} '{}' is not a regular file but {}", what, shown, kind_of(st.st_mode));
    ::close(fd);
    return f;
  }
  if (uint64_t(st.st_size) > max_bytes) {
    why = fmt::format("{} '{}' is {} bytes; a {} may have at most {}", what, shown,
                      uint64_t(st.st_size), what, byte_limit_text(max_bytes));
    ::close(fd);
    return f;
  }
  // Reads of a regular file never block on O_NONBLOCK, but clear it for whoever reads next.
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  f.path_ = path, f.what_ = what;
  f.max_ = max_bytes, f.size_ = uint64_t(st.st_size), f.mode_ = unsigned(st.st_mode);
  f.fd_ = fd;
  return f;
}

bool RegularFile::read_all(std::string& out, std::string& why) const {
  const std::string shown = printable(path_, 200);
  out.clear();
  out.reserve(size_t(size_));
  char buf[1 << 16];
  uint64_t off = 0;
  while (true) {
    const ssize_t n = ::pread(fd_, buf, sizeof buf, off_t(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      why = fmt::format("cannot read {} '{}': {}", what_, shown, std::strerror(errno));
      return false;
    }
    if (n == 0) return true;
    off += uint64_t(n);
    if (off > max_) {  // it grew after it was opened
      why = fmt::format("{} '{}' grew past the {} a {} may have while it was read", what_, shown,
                        byte_limit_text(max_), what_);
      return false;
    }
    out.append(buf, size_t(n));
  }
}

}  // namespace cllm
