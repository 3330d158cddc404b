#pragma once
// Writing files so that nothing already safe is ever lost: a whole file replaces the old one only
// once it is completely on disk (temporary, fsync, rename, fsync of the folder), and every write
// is checked, so a full disk fails loudly instead of leaving an empty or torn file behind.
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cllm {

// A file could not be written; what() is one line naming the file and the reason.
struct FileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ByteSpan {
  const void* data = nullptr;
  size_t size = 0;
};

// Writes `pieces` one after another to "<path>.tmp.<pid>", fsyncs it, renames it over `path` and
// fsyncs the folder. On any failure the temporary is removed, the old file at `path` (if any) is
// untouched, and FileError says what failed.
// A symlink at `path` is resolved first (the temporary and the rename happen beside the real
// file; the link stays a link). A target that is not a regular file (a device such as /dev/null,
// a FIFO, a socket, a folder) is refused with FileError: renaming over it would replace a device
// node for the whole machine, writing into it directly could block forever (a FIFO without a
// reader) or have effects beyond a file (a disk), and neither could keep the promise above.
//
// PageCache::bypass writes with O_DIRECT through a small aligned buffer, for files of gigabytes
// that nobody reads soon (checkpoints): the kernel then neither copies them into its page cache nor
// writes that back, which costs the writer several times the CPU (and pushes other data out of the
// cache). Where the file system refuses O_DIRECT, the file is written through the cache.
enum class PageCache { use, bypass };
void write_file_atomic(const std::string& path, const std::vector<ByteSpan>& pieces,
                       PageCache cache = PageCache::use);
void write_file_atomic(const std::string& path, std::string_view text);

// O_DIRECT transfers: buffers, offsets and lengths are multiples of this (the largest logical
// block size of common disks).
constexpr size_t kDirectIoAlign = 4096;

// A buffer for O_DIRECT transfers: `bytes` (a multiple of kDirectIoAlign), aligned to it.
// Throws std::bad_alloc.
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using DirectIoBuffer = std::unique_ptr<char, FreeDeleter>;
DirectIoBuffer direct_io_buffer(size_t bytes);

// Sets (on) or clears O_DIRECT on an open file; false where that fails (the fd is unchanged).
// A file system may take O_DIRECT and still refuse transfers of kDirectIoAlign (EINVAL: a larger
// block): callers then clear it and go on through the cache.
bool set_direct_io(int fd, bool on);

// A file that grows by whole records (metrics.jsonl): each append is written completely or
// throws FileError; a failed append leaves the bytes before it intact.
class AppendFile {
 public:
  AppendFile() = default;
  // truncate: start empty; otherwise append to what is there. Throws FileError.
  AppendFile(const std::string& path, bool truncate);
  ~AppendFile();
  AppendFile(AppendFile&& o) noexcept;
  AppendFile& operator=(AppendFile&& o) noexcept;
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  void append(std::string_view bytes);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// `path` with every symlink in its last component followed (the file a write would change);
// `path` itself when it is not a link. A dangling link gives its missing target. FileError on a
// loop.
std::string resolve_output_path(const std::string& path);

// FileError when `path` exists (following links) and is not a regular file.
void refuse_non_regular_output(const std::string& path);

// "No space left on device" for the current errno.
std::string errno_text();

}  // namespace cllm
