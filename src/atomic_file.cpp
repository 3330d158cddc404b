#include "src/atomic_file.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include <fmt/format.h>

namespace cllm {

namespace {

bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= size_t(w);
  }
  return true;
}

// Writes the pieces through an aligned buffer with O_DIRECT set on fd: whole buffers, then the
// rest padded to the alignment, and the file cut back to its size. False on any failure (errno).
bool write_direct(int fd, const std::vector<ByteSpan>& pieces) {
  constexpr size_t kBuffer = size_t(8) << 20;
  DirectIoBuffer buffer;
  try {
    buffer = direct_io_buffer(kBuffer);
  } catch (const std::bad_alloc&) {
    errno = ENOMEM;  // reported as the write's failure, like any other
    return false;
  }
  char* const buf = buffer.get();
  size_t fill = 0;
  uint64_t total = 0;
  for (const auto& p : pieces) {
    const char* src = static_cast<const char*>(p.data);
    total += p.size;
    for (size_t n = p.size; n > 0;) {
      const size_t take = std::min(n, kBuffer - fill);
      std::memcpy(buf + fill, src, take);
      fill += take, src += take, n -= take;
      if (fill == kBuffer) {
        if (!write_all(fd, buf, kBuffer)) return false;
        fill = 0;
      }
    }
  }
  if (fill > 0) {
    const size_t padded = (fill + kDirectIoAlign - 1) / kDirectIoAlign * kDirectIoAlign;
    std::memset(buf + fill, 0, padded - fill);
    if (!write_all(fd, buf, padded)) return false;
  }
  return ::ftruncate(fd, off_t(total)) == 0;
}

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

const char* non_regular_kind(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

}  // namespace

std::string resolve_output_path(const std::string& path) {
  std::string p = path;
  // Each step replaces a symlink by its target (relative targets are relative to the link's
  // folder). 40 is the kernel's own limit (ELOOP).
  for (int hops = 0; hops < 40; ++hops) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return p;
    std::string target(size_t(PATH_MAX), '\0');
    const ssize_t n = ::readlink(p.c_str(), target.data(), target.size());
    if (n < 0) throw FileError(fmt::format("cannot write '{}': {}", path, errno_text()));
    target.resize(size_t(n));
    p = target.empty() || target[0] == '/' ? target : parent_dir(p) + "/" + target;
  }
  throw FileError(fmt::format("cannot write '{}': too many levels of symbolic links", path));
}

void refuse_non_regular_output(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return;
  throw FileError(
      fmt::format("cannot write '{}': it is {}, not a regular file; give the path of "
                  "a file",
                  path, non_regular_kind(st.st_mode)));
}

std::string errno_text() {
  return std::strerror(errno);
}

DirectIoBuffer direct_io_buffer(size_t bytes) {
  DirectIoBuffer b(static_cast<char*>(std::aligned_alloc(kDirectIoAlign, bytes)));
  if (!b) throw std::bad_alloc();
  return b;
}

bool set_direct_io(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, on ? flags | O_DIRECT : flags & ~O_DIRECT) == 0;
}

void write_file_atomic(const std::string& given, const std::vector<ByteSpan>& pieces,
                       PageCache cache) {
  // The temporary goes next to the real file, and the rename replaces that file: a symlink
  // given as the target stays a link and now points to the new contents.
  const std::string path = resolve_output_path(given);
  refuse_non_regular_output(path);
  const auto fail = [&](const std::string& what) {
    return FileError(fmt::format("cannot write '{}': {}", given, what));
  };
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  struct Temporary {  // removed on every path that does not end in the rename
    std::string name;
    int fd = -1;
    bool keep = false;
    ~Temporary() {
      if (fd >= 0) ::close(fd);
      if (!keep) ::unlink(name.c_str());
    }
  } temporary{tmp};
  temporary.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (temporary.fd < 0) {
    const int err = errno;
    temporary.keep = true;  // nothing was created
    if (err == ENOENT)
      throw fail(
          fmt::format("its folder '{}' does not exist ({})", parent_dir(path), std::strerror(err)));
    throw fail(fmt::format("cannot create '{}': {}", tmp, std::strerror(err)));
  }
  bool written = false;
  if (cache == PageCache::bypass && set_direct_io(temporary.fd, true)) {
    written = write_direct(temporary.fd, pieces);
    if (!written && errno != EINVAL)
      throw fail(fmt::format("writing '{}' failed: {}", tmp, errno_text()));
    // EINVAL: O_DIRECT taken but these transfers refused; start again through the cache.
    if (!written && (!set_direct_io(temporary.fd, false) || ::ftruncate(temporary.fd, 0) != 0 ||
                     ::lseek(temporary.fd, 0, SEEK_SET) != 0))
      throw fail(fmt::format("writing '{}' failed: {}", tmp, errno_text()));
  }
  if (!written)
    for (const auto& p : pieces)
      if (!write_all(temporary.fd, p.data, p.size))
        throw fail(fmt::format("writing '{}' failed: {}", tmp, errno_text()));
  if (::fsync(temporary.fd) != 0) throw fail(fmt::format("fsync failed: {}", errno_text()));
  const int fd = std::exchange(temporary.fd, -1);
  if (::close(fd) != 0) throw fail(fmt::format("closing '{}' failed: {}", tmp, errno_text()));
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw fail(fmt::format("renaming '{}' over it failed: {}", tmp, errno_text()));
  temporary.keep = true;

  const int dir = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const bool synced = dir >= 0 && ::fsync(dir) == 0;
  const std::string why = synced ? std::string() : errno_text();
  if (dir >= 0) ::close(dir);
  if (!synced)
    throw FileError(fmt::format("wrote '{}' but could not sync its folder: {}", given, why));
}

void write_file_atomic(const std::string& path, std::string_view text) {
  write_file_atomic(path, {ByteSpan{text.data(), text.size()}});
}

AppendFile::AppendFile(const std::string& path, bool truncate) : path_(path) {
  refuse_non_regular_output(path);  // a FIFO would block the open, a device take the rows
  fd_ =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : O_APPEND), 0644);
  if (fd_ < 0) throw FileError(fmt::format("cannot open '{}': {}", path, errno_text()));
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

AppendFile::AppendFile(AppendFile&& o) noexcept
    : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)) {}

AppendFile& AppendFile::operator=(AppendFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

void AppendFile::append(std::string_view bytes) {
  const off_t start = ::lseek(fd_, 0, SEEK_END);
  if (write_all(fd_, bytes.data(), bytes.size())) return;
  const std::string why = errno_text();
  // A torn record would be a corrupt last line: cut the file back to where it was.
  if (start >= 0) [[maybe_unused]]
    const int rc = ::ftruncate(fd_, start);
  throw FileError(fmt::format("cannot write '{}': {}", path_, why));
}

}  // namespace cllm
